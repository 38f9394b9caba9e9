"""Weight tensor <-> the points DKM clusters, with the input checks every path shares.

A weight [rows, cols] (rows = output channels) is cut into G = rows / group_size groups of
consecutive rows, each with its own centroid table; every row is cut into vectors of
``cluster_dim`` consecutive weights. So a group holds P = group_size * cols / cluster_dim points
of dimension d = cluster_dim:  [rows, cols] <-> [G, P, d]  (a view, no copy).
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError
from llmpress.methods.dkm.config import DKMConfig


def check(weight: torch.Tensor, config: DKMConfig, name: str) -> None:
    """Raise a ConfigError naming module ``name`` when ``weight`` cannot be clustered with ``config``."""
    if weight.dim() != 2:
        raise ConfigError(f"{name}: DKM clusters 2-D weights, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if config.group_size and rows % config.group_size:
        raise ConfigError(f"{name}: group_size {config.group_size} does not divide its {rows} output channels; "
                          f"choose a divisor of {rows} (or 0 for one table per tensor)")
    if cols % config.cluster_dim:
        raise ConfigError(f"{name}: cluster_dim {config.cluster_dim} does not divide its rows of {cols} weights; "
                          f"choose a divisor of {cols}")
    group_rows = config.group_size or rows
    points = group_rows * cols // config.cluster_dim
    if points < config.n_clusters:
        raise ConfigError(f"{name}: a group holds {points} points, fewer than the {config.n_clusters} centroids of "
                          f"{config.n_bits} bits; use fewer bits or a larger group_size")
    if not torch.isfinite(weight).all():
        raise ConfigError(f"{name}: weight contains NaN or Inf; DKM cannot cluster it (fix the model or the training "
                          "run that produced it)")


def group_count(weight: torch.Tensor, config: DKMConfig) -> int:
    """G, the number of centroid tables of ``weight`` [rows, cols]."""
    return weight.shape[0] // config.group_size if config.group_size else 1


def to_points(weight: torch.Tensor, config: DKMConfig) -> torch.Tensor:
    """[rows, cols] -> [G, P, d] view."""
    rows, cols = weight.shape
    groups = rows // config.group_size if config.group_size else 1
    return weight.reshape(groups, rows // groups * cols // config.cluster_dim, config.cluster_dim)


def from_points(points: torch.Tensor, shape: torch.Size | tuple[int, int]) -> torch.Tensor:
    """[G, P, d] -> [rows, cols]."""
    return points.reshape(shape)


def importance_view(importance: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    """Validate per-weight importance ([cols], e.g. one value per input column, or [rows, cols])
    and return it as a float32 [rows, cols] view of weight's shape (an expand: no copy of a [cols]
    vector). Importance multiplies each weight's squared error in the clustering objective."""
    if importance.dim() not in (1, 2) or importance.shape[-1] != weight.shape[1] or (
            importance.dim() == 2 and importance.shape[0] not in (1, weight.shape[0])):
        raise ConfigError(f"{name}: importance has shape {tuple(importance.shape)}; it must be one value per input "
                          f"column ({weight.shape[1]},) or per weight {tuple(weight.shape)}")
    imp = importance.detach().to(device=weight.device, dtype=torch.float32)
    if not bool(torch.isfinite(imp).all()) or bool((imp < 0).any()) or not bool(imp.sum() > 0):
        raise ConfigError(f"{name}: importance must be finite, >= 0 and not all 0 (e.g. the calibration Hessian "
                          "diagonal of the layer's inputs)")
    return imp.expand(weight.shape)


def point_mass(importance: torch.Tensor, config: DKMConfig) -> torch.Tensor:
    """[rows, cols] importance -> [G, P] mass of each point: a vector of ``cluster_dim`` weights
    counts with the summed importance of its weights."""
    rows, cols = importance.shape
    groups = rows // config.group_size if config.group_size else 1
    if config.cluster_dim == 1:  # no sum: a per-column vector expanded over rows stays a view where it can
        return importance.reshape(groups, rows // groups * cols)
    return importance.reshape(groups, rows // groups * cols // config.cluster_dim, config.cluster_dim).sum(-1)
