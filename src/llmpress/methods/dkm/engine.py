"""One DKM step on one weight tensor, whichever implementation the config picks."""

from __future__ import annotations

import contextlib

import torch

from llmpress.errors import ConfigError
from llmpress.methods.dkm import fused
from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm.bitpattern import BitPatternDKM, view_dtype
from llmpress.methods.dkm.config import DKMConfig
from llmpress.methods.dkm.distinct import distinct
from llmpress.methods.dkm.init import kmeans_1d_exact, kmeans_plus_plus
from llmpress.methods.dkm.saved_tensors import SavedStats, SavedTensorHooks
from llmpress.methods.dkm.reference import soft_kmeans
from llmpress.methods.dkm.unique import UniqueDKM

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_NO_HOOKS = contextlib.nullcontext()


def absolute_tau(weight: torch.Tensor, config: DKMConfig, tau: float | None = None) -> float:
    """The softmax temperature in weight units squared: ``tau`` (default ``config.tau``; e.g.
    ``config.tau_final``) times the weight variance if ``config.tau_relative``."""
    tau = float(config.tau if tau is None else tau)
    if not config.tau_relative:
        return tau
    var = float(weight.detach().float().var())
    return tau * (var if var > 0 else 1.0)


def check(weight: torch.Tensor, config: DKMConfig, name: str = "weight") -> None:
    """All input checks, with errors that name the module."""
    pts.check(weight, config, name)
    if config.implementation == "table" and weight.dtype not in (torch.float16, torch.bfloat16):
        dtype = _DTYPES[config.value_dtype]
        limit = torch.finfo(dtype).max
        if float(weight.detach().abs().max()) > limit:
            raise ConfigError(f"{name}: weights exceed the {config.value_dtype} range (|w| > {limit:g}) that "
                              "memory='table' clusters through; set value_dtype='bfloat16'")


def initial_centroids(weight: torch.Tensor, config: DKMConfig, importance: torch.Tensor | None = None,
                      name: str = "weight") -> torch.Tensor:
    """First-step centroids [G, K, d] from each group's distinct values (``config.init``).

    ``importance`` ([cols] or [rows, cols], see :func:`cluster`): k-means of the importance-weighted
    squared error, the same objective the weighted centroid updates then follow.
    """
    points = pts.to_points(weight.detach(), config)
    mass = None
    if importance is not None:
        mass = pts.point_mass(pts.importance_view(importance, weight, name), config).cpu()
    if config.init == "kmeans++" and config.implementation in ("fused", "naive"):
        # Small groups hold mostly distinct values: every point with count 1 is the same
        # objective, without a unique() per group (thousands of them per layer at one row each).
        counts = mass if mass is not None else points.new_ones(points.shape[:2])
        return kmeans_plus_plus(points.float(), counts, config.n_clusters, seed=config.seed)
    values, counts, idx = distinct(points)
    if mass is not None:
        counts = torch.zeros_like(counts).scatter_add_(1, idx.cpu(), mass)
    if config.init == "kmeans1d":
        return kmeans_1d_exact(values, counts, config.n_clusters)
    return kmeans_plus_plus(values, counts, config.n_clusters, seed=config.seed)


def cluster(weight: torch.Tensor, config: DKMConfig, centroids: torch.Tensor | None = None,
            tau: float | None = None, name: str = "weight", stats: SavedStats | None = None,
            importance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-clustered weight W~ = A C (same shape and dtype as ``weight``, differentiable w.r.t. it)
    and the final centroids [G, K, d] (detached; pass them back next step as the warm start).

    ``centroids``: warm start [G, K, d]; None initialises them (k-means++). ``tau``: absolute
    temperature; None derives it from ``config`` and the weight (:func:`absolute_tau`).
    ``stats``: add what this step saves for backward to it (see :mod:`.saved_tensors`).
    ``importance``: [cols] (one value per input column, e.g. the calibration Hessian diagonal
    sum_t x_tj^2) or [rows, cols], >= 0: each centroid update becomes the importance-weighted
    mean c_k = sum_i s_i a_ik w_i / sum_i s_i a_ik, i.e. soft k-means of sum_i s_i ||w_i - c||^2,
    which spends the levels where the weights multiply large activations. The attention of a
    weight is unchanged (it depends on its own distances only). None = every weight counts once.
    """
    check(weight, config, name)
    imp = pts.importance_view(importance, weight, name) if importance is not None else None
    if centroids is None:
        centroids = initial_centroids(weight, config, imp, name)
    groups = pts.to_points(weight, config)
    expected = (groups.shape[0], config.n_clusters, config.cluster_dim)
    if tuple(centroids.shape) != expected:
        raise ConfigError(f"{name}: warm-start centroids have shape {tuple(centroids.shape)}, the config needs "
                          f"{expected}; drop them to re-initialise")
    # A copy: the caller updates its warm-start buffer in place while backward still needs c0.
    c0 = centroids.detach().to(device=weight.device, dtype=torch.float32, copy=True)
    tau = absolute_tau(weight, config) if tau is None else float(tau)
    hooks = SavedTensorHooks(config.marshal_device if config.marshal else None, config.shard, stats)
    with hooks if (config.marshal or config.shard or stats is not None) else _NO_HOOKS:
        # naive and fused keep every point anyway, so they take the masses themselves; the table
        # paths rebuild them from the (compact) importance in backward
        mass = pts.point_mass(imp, config) if imp is not None and config.implementation in ("naive", "fused") else None
        if config.implementation == "naive":
            out, c_final, _ = soft_kmeans(groups, c0, tau, config.max_iter, config.epsilon, mass)
        elif config.implementation == "fused":
            out, c_final = fused.soft_kmeans(groups, c0, tau, config.max_iter, mass)
        elif config.implementation == "unique":
            out, c_final = UniqueDKM.apply(groups, c0, tau, config.max_iter, config.epsilon, imp, config)
        else:
            dtype = view_dtype(weight.dtype, _DTYPES[config.value_dtype])
            out, c_final = BitPatternDKM.apply(groups, c0, tau, config.max_iter, config.epsilon, dtype, imp, config)
    return pts.from_points(out, weight.shape).to(weight.dtype), c_final.detach()
