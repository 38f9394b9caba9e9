"""Post-training k-means palettization: the baseline DKM must beat at equal bits per weight.

Each table (per tensor, or per group of ``group_size`` output channels) holds 2**bits
centroids found by k-means over the weights (k-means++ seeding and Lloyd steps, or exact
1-D k-means for scalars); every weight (or vector of ``cluster_dim`` weights) is then replaced
by the index of its nearest centroid. No training.

Optional sensitivity weighting (``sensitivity="hessian"``): k-means minimises
sum_i s_i (w_i - c(w_i))^2 with s_i the diagonal of the layer's calibration Hessian
H = X^T X at the weight's input column, i.e. the mean squared activation that multiplies it.
This is the diagonal of the output-error objective GPTQ minimises, ||(W - W^) X||^2 (the
weighting SqueezeLLM uses with Fisher information instead of H). It needs calibration data.

Optional error feedback (``error_feedback=True``), the scalar case of GPTVQ (van Baalen et al.
2024): the tables are found as above from the original weights, then the indices are chosen
column by column, in order of decreasing H[j, j], with GPTQ's compensation of each column's
rounding error on the columns not yet coded (:mod:`llmpress.methods.error_feedback`). The
format is unchanged; only which entry each weight points to differs.

Optional table refit (``refit=True``), GPTVQ's codebook update: with the indices fixed, each
table's entries are re-solved by least squares on the output error tr(dW H dW^T) instead of
being the (weighted) means of their weights, which ignore how the columns' errors correlate.

Optional index refinement (``refine=N``), COMQ's coordinate descent (Zhang et al. 2024) on a
lookup table instead of an integer grid: N passes over the input columns, each re-choosing every
weight's entry as the one that minimises tr(dW H dW^T) with all other indices held, which is
exact and never raises the error. Error feedback is greedy (a column is coded once, against
errors still to come); the passes revisit every choice with all the others known. With
``refit`` the tables are re-solved after every pass, so the two steps alternate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.config import JsonConfig, check_int
from llmpress.errors import ConfigError
from llmpress.formats import bitpack
from llmpress.formats.palette import PaletteTensor, palettize
from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm.config import DKMConfig
from llmpress.methods.dkm.distinct import distinct
from llmpress.methods.dkm.init import kmeans_1d_exact, kmeans_plus_plus
from llmpress.methods.error_feedback import quantize_columns
from llmpress.methods.hessian import ordered_inverse

INITS = ("kmeans++", "kmeans1d")
SENSITIVITIES = ("none", "hessian")
# With at most this many output channels per table, most weights of a group are distinct: k-means
# runs on the points themselves instead of a unique() per group (thousands per layer).
SMALL_GROUP = 4


@dataclass
class KMeansConfig(JsonConfig):
    """``bits`` 1..8 (2**bits centroids per table); ``group_size`` output channels per table
    (0 = one table per tensor); ``cluster_dim`` weights per clustered vector; ``init``
    ``kmeans++`` (then ``lloyd_steps`` Lloyd steps, seeded) or ``kmeans1d`` (exact, scalars);
    ``sensitivity`` ``none`` or ``hessian`` (weights counted by their input column's calibration
    Hessian diagonal; needs calibration data); ``error_feedback`` picks the indices with GPTQ's
    column-by-column error compensation (scalars only; needs calibration data), with ``damp`` x
    mean(diag H) added to H's diagonal; ``refit`` then re-solves each table's entries by least
    squares on the output error with the indices fixed (scalars only; needs calibration data);
    ``refine`` passes of coordinate descent on the indices (scalars only; needs calibration data),
    each followed by a refit when ``refit`` is set."""

    bits: int = 3
    group_size: int = 0
    cluster_dim: int = 1
    init: str = "kmeans++"
    lloyd_steps: int = 50
    seed: int = 0
    sensitivity: str = "none"
    error_feedback: bool = False
    damp: float = 0.01
    refit: bool = False
    refine: int = 0

    def __post_init__(self):
        for name, lo, hi in (("bits", 1, 8), ("group_size", 0, None), ("cluster_dim", 1, None),
                             ("lloyd_steps", 0, None), ("seed", 0, None), ("refine", 0, None)):
            check_int("k-means", name, getattr(self, name), lo, hi)
        if self.init not in INITS:
            raise ConfigError(f"k-means init must be one of {INITS}, got {self.init!r}")
        if self.init == "kmeans1d" and self.cluster_dim != 1:
            raise ConfigError("k-means init='kmeans1d' is exact 1-D k-means; with cluster_dim > 1 use 'kmeans++'")
        if self.sensitivity not in SENSITIVITIES:
            raise ConfigError(f"k-means sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
        if self.error_feedback and self.cluster_dim != 1:
            raise ConfigError("k-means error_feedback codes one input column at a time; it needs cluster_dim=1")
        if self.refit and self.cluster_dim != 1:
            raise ConfigError("k-means refit solves scalar table entries; it needs cluster_dim=1")
        if self.refine and self.cluster_dim != 1:
            raise ConfigError("k-means refine re-chooses one scalar index at a time; it needs cluster_dim=1")
        if not 0 <= self.damp < 1:
            raise ConfigError(f"damp must be in [0, 1) (a fraction of the mean Hessian diagonal), got {self.damp}")

    @property
    def calibrated(self) -> bool:
        """Whether quantizing needs each layer's calibration Hessian."""
        return self.sensitivity != "none" or self.error_feedback or self.refit or self.refine > 0


def quantize_weight(weight: torch.Tensor, config: KMeansConfig, name: str = "weight",
                    importance: torch.Tensor | None = None) -> PaletteTensor:
    """weight [out_features, in_features] -> palette (lookup tables + packed indices).

    ``importance``: [in_features] (or [out, in]) non-negative weight of each weight's squared
    error; None counts every weight once. Required when ``config.sensitivity`` is not "none".
    """
    shape_config = DKMConfig(n_bits=config.bits, group_size=config.group_size, cluster_dim=config.cluster_dim,
                             memory="unique")
    pts.check(weight, shape_config, name)
    if config.calibrated and importance is None:
        raise ConfigError(f"{name}: k-means sensitivity={config.sensitivity!r} needs the layer's calibration "
                          "Hessian; run it through the calibrated driver (llmpress compress adds calibration)")
    points = pts.to_points(weight.detach().float(), shape_config)
    mass = points.new_ones(points.shape[:2])
    if importance is not None:
        imp = importance.detach().float().to(weight.device).expand(weight.shape).contiguous()
        if not bool((imp >= 0).all()) or not bool(imp.sum() > 0):
            raise ConfigError(f"{name}: k-means importance must be >= 0 and not all 0")
        # A vector of cluster_dim weights counts with the summed importance of its columns.
        mass = imp.reshape(points.shape).sum(-1)
    k = 1 << config.bits
    if 0 < config.group_size <= SMALL_GROUP and config.init == "kmeans++":
        values, counts = points, mass
    else:
        values, counts, idx = distinct(points)
        counts = torch.zeros_like(counts).scatter_add_(1, idx, mass) if importance is not None else counts
    if config.init == "kmeans1d":
        lut = kmeans_1d_exact(values, counts, k)
    else:
        lut = kmeans_plus_plus(values, counts, k, seed=config.seed, lloyd_steps=config.lloyd_steps)
    return palettize(weight, lut, config.group_size)


def quantize(weight: torch.Tensor, hessian: torch.Tensor, config: KMeansConfig, name: str = "weight") -> PaletteTensor:
    """The calibrated entry point (H [in, in] = X^T X of the layer's calibration inputs): importance
    diag(H) with ``sensitivity="hessian"``, and the indices chosen with error feedback when asked."""
    importance = torch.diagonal(hessian).clamp_min(0) if config.sensitivity == "hessian" else None
    palette = quantize_weight(weight, config, name, importance=importance)
    if config.error_feedback:
        palette = with_error_feedback(weight, hessian, palette, config.damp, name)
    for _ in range(config.refine):
        palette = coordinate_descent(weight, hessian, palette, config.damp)
        if config.refit:
            palette = refit_tables(weight, hessian, palette, config.damp)
    if config.refit and not config.refine:
        palette = refit_tables(weight, hessian, palette, config.damp)
    return palette


def _row_tables(palette: PaletteTensor) -> torch.Tensor:
    """[rows, K] float64: the scalar table each output row codes with (rows of a group share one)."""
    rows = palette.spec.shape[0]
    per_row = palette.spec.group_size or rows
    return palette.lut[:, :, 0].to(torch.float64).repeat_interleave(per_row, dim=0)[:rows]


def _damped(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """H + damp x mean(diag H) x I in float64: the objective refit and coordinate descent share."""
    h = hessian.to(torch.float64)
    return h + damp * float(torch.diagonal(h).mean()) * torch.eye(h.shape[0], dtype=torch.float64, device=h.device)


class _NearestEntry:
    """Each row's weight goes to the nearest entry of its own (fixed) table."""

    group = 0  # the tables are set before the first column

    def __init__(self, tables: torch.Tensor, order: torch.Tensor):
        self.tables, self.order = tables, order.tolist()  # [rows, K] float64; column visiting order
        self.codes = torch.zeros(tables.shape[0], len(self.order), dtype=torch.uint8, device=tables.device)

    def start_group(self, col: int, weights: torch.Tensor) -> None:
        pass

    def quantize_column(self, col: int, w: torch.Tensor) -> torch.Tensor:
        idx = (w.unsqueeze(1) - self.tables).abs().argmin(1)
        self.codes[:, self.order[col]] = idx.to(torch.uint8)
        return self.tables.gather(1, idx.unsqueeze(1)).squeeze(1)


def with_error_feedback(weight: torch.Tensor, hessian: torch.Tensor, palette: PaletteTensor, damp: float = 0.01,
                        name: str = "weight") -> PaletteTensor:
    """``palette``'s tables with indices re-chosen column by column (decreasing H[j, j]) under
    GPTQ's error feedback: weight [out, in], hessian [in, in]. Scalar palettes only."""
    spec = palette.spec
    w, order, upper = ordered_inverse(weight, hessian, damp, name, act_order=True)
    columns = _NearestEntry(_row_tables(palette), order)
    quantize_columns(w[:, order], upper, columns)
    return PaletteTensor(spec, palette.lut, bitpack.pack(columns.codes, spec.bits))


def refit_tables(weight: torch.Tensor, hessian: torch.Tensor, palette: PaletteTensor, damp: float = 0.01) -> PaletteTensor:
    """``palette`` with the same indices and each table re-solved to minimise tr(dW H dW^T), dW =
    weight - decoded (weight [out, in], hessian [in, in], ``damp`` x mean(diag H) added to its
    diagonal). Scalar palettes only.

    With one-hot P_r [in, K] of row r's indices, the rows r sharing a table c solve
    (sum_r P_r^T H P_r) c = sum_r P_r^T H w_r. An entry no weight points to keeps its value.
    """
    spec = palette.spec
    if spec.cluster_dim != 1:
        raise ConfigError("refit_tables solves scalar entries; the palette has cluster_dim > 1")
    rows, cols = spec.shape
    k = spec.n_entries
    h = _damped(hessian, damp)
    onehot = torch.nn.functional.one_hot(palette.int_indices().view(rows, cols), k).to(torch.float64)  # [rows, in, K]
    h_onehot = (h @ onehot.permute(1, 0, 2).reshape(cols, rows * k)).reshape(cols, rows, k).permute(1, 0, 2)
    gram = onehot.transpose(1, 2) @ h_onehot                                            # [rows, K, K]
    rhs = (h_onehot.transpose(1, 2) @ weight.detach().to(torch.float64).unsqueeze(-1)).squeeze(-1)  # [rows, K]
    groups = spec.n_groups
    gram = gram.view(groups, -1, k, k).sum(1)
    rhs = rhs.view(groups, -1, k).sum(1)
    old = palette.lut[:, :, 0].to(torch.float64)
    used = onehot.view(groups, -1, k).sum(1) > 0                                        # [G, K]
    # Unused entries: an identity row pinned to the old value keeps the system solvable.
    eye = torch.diag_embed((~used).to(torch.float64))
    gram = gram * used.unsqueeze(1) * used.unsqueeze(2) + eye
    rhs = torch.where(used, rhs, old)
    lut = torch.linalg.solve(gram, rhs).unsqueeze(-1).to(palette.lut.dtype)
    return PaletteTensor(spec, lut, palette.indices)


def coordinate_descent(weight: torch.Tensor, hessian: torch.Tensor, palette: PaletteTensor, damp: float = 0.01,
                       block_size: int = 128) -> PaletteTensor:
    """``palette`` after one pass of exact coordinate descent on its indices: weight [out, in],
    hessian [in, in] (``damp`` x mean(diag H) added to its diagonal). Scalar palettes only.

    With E = W - W^ and G = E H, moving e[r, j] by d changes tr(E H E^T) by 2 d G[r, j] + H[j, j] d^2,
    so every row picks, for column j, the entry with the lowest change (zero if it keeps its own).
    Columns are visited in order of decreasing H[j, j]. G is kept only for the columns still to be
    visited: exact inside the current block, and brought up to date for the later columns once
    per block with one matrix product.
    """
    spec = palette.spec
    if spec.cluster_dim != 1:
        raise ConfigError("coordinate_descent re-chooses scalar entries; the palette has cluster_dim > 1")
    rows, cols = spec.shape
    h = _damped(hessian, damp)
    order = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    h = h[order][:, order]
    tables = _row_tables(palette)                                                               # [rows, K]
    idx = palette.int_indices().view(rows, cols)[:, order].long()
    w = weight.detach().to(torch.float64)[:, order]
    err = w - tables.gather(1, idx)
    grad = err @ h
    for b0 in range(0, cols, block_size):
        b1 = min(b0 + block_size, cols)
        moved = w.new_zeros(rows, b1 - b0)
        for j in range(b0, b1):
            step = (w[:, j:j + 1] - tables) - err[:, j:j + 1]                              # [rows, K]
            best = (2 * step * grad[:, j:j + 1] + h[j, j] * step * step).argmin(1, keepdim=True)
            d = step.gather(1, best).squeeze(1)
            idx[:, j] = best.squeeze(1)
            err[:, j] += d
            moved[:, j - b0] = d
            grad[:, j:b1] += d.unsqueeze(1) * h[j, j:b1].unsqueeze(0)
        grad[:, b1:] += moved @ h[b0:b1, b1:]
    codes = torch.empty_like(idx)
    codes[:, order] = idx
    return PaletteTensor(spec, palette.lut, bitpack.pack(codes.to(torch.uint8), spec.bits))
