"""llama.cpp's block grids (k-quants, IQ4_NL, Q4_0/Q5_0) fitted to weights, and rounding onto them.

A block's grid is its integer sub-scales (and mins) and float16 super-scales
(:mod:`llmpress.formats.ggml_blocks`). :func:`fit` chooses them for one block of every row; alone
(:func:`round_to_nearest`) that is RTN onto a GGUF type, and inside GPTQ it fixes each block's grid
when its first column is reached, GPTQ's error feedback then choosing the codes.

The fit follows the idea of llama.cpp's quantizers (``make_qkx2_quants`` / ``make_q3_quants``): per
sub-block, try a few scales around the range-filling one, round, re-solve scale (and min) by
weighted least squares for those codes, and keep the candidate with the least weighted squared
error; then quantize the sub-scales against the block's largest. The weights of the error are the
columns' importance: GPTQ passes its Hessian diagonal (the mean squared input of each column, what
llama.cpp's importance matrix holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats.ggml_blocks import (TYPES, BlockFields, BlockType, GGMLBlocks, GGMLSpec, block_type,
                                          sub_block_grid)

# The type written for a k-quant tensor whose width is not a multiple of 256: what llama.cpp's own
# quantizer writes there (llama-cpp-python 0.3.36, measured), so that both write the same type mix.
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0"}
_TRIALS = torch.linspace(-1.0, 1.0, 11, dtype=torch.float64)  # code-range offsets of the candidate scales


# What a method's ``grid`` setting may name: llmpress's own, or a ggml type (Q4_0/Q5_0 are only
# fallbacks: ``--symmetric`` uniform 4-bit g32 codes already export as Q4_0).
GRIDS = ("uniform", "Q2_K", "Q3_K", "Q4_K", "IQ4_NL")


def check_grid(owner: str, grid: object, bits: int) -> None:
    """ConfigError unless ``grid`` is in :data:`GRIDS` and, for a ggml type, ``bits`` is its code width."""
    if grid not in GRIDS:
        raise ConfigError(f"{owner} grid must be one of {list(GRIDS)}, got {grid!r}")
    if grid != "uniform" and TYPES[grid].bits != bits:
        raise ConfigError(f"{owner} grid {grid} holds {TYPES[grid].bits}-bit codes; got bits={bits}")


def grid_bits(grid: str) -> int:
    """The code width of a ggml grid in :data:`GRIDS`."""
    if grid not in GRIDS or grid == "uniform":
        raise ConfigError(f"unknown ggml grid {grid!r}; available: {list(GRIDS[1:])}")
    return TYPES[grid].bits


def grid_type(qtype: str, cols: int) -> str:
    """The block type a ``qtype`` request writes for rows of ``cols`` weights."""
    t = block_type(qtype)
    if cols % t.block == 0:
        return qtype
    fallback = FALLBACK.get(qtype)
    if fallback is not None and cols % TYPES[fallback].block == 0:
        return fallback
    also = f" (nor {fallback}'s of {TYPES[fallback].block}, its fallback)" if fallback else ""
    raise ConfigError(f"a row of {cols} weights does not fit {qtype}'s blocks of {t.block}{also}")


@dataclass
class Grid:
    """The grids of k consecutive blocks of every row: d, dmin float16 [rows, k]; sc, m int16 [rows, k, n_sub]."""

    t: BlockType
    d: torch.Tensor
    sc: torch.Tensor
    dmin: torch.Tensor
    m: torch.Tensor

    def __post_init__(self):
        # Every code's value in every sub-block, float32 [rows, k, n_sub, levels], computed as ggml
        # decodes: once per grid, since GPTQ reads one sub-block of it per column.
        levels = torch.tensor(self.t.levels, dtype=torch.float32, device=self.d.device)
        step, off = sub_block_grid(self.d, self.sc, self.dmin, self.m)
        self.table = step[..., None] * levels - off[..., None]

    def values(self, block: int, sub: int) -> torch.Tensor:
        """Every code's value in sub-block ``sub`` of block ``block``, float32 [rows, levels]."""
        return self.table[:, block, sub]

    def nearest(self, w: torch.Tensor, block: int, sub: int) -> tuple[torch.Tensor, torch.Tensor]:
        """w [rows, n] (columns of that sub-block) -> (codes uint8 [rows, n], their values float32)."""
        v = self.values(block, sub)
        codes = (w.to(torch.float64).unsqueeze(2) - v.to(torch.float64).unsqueeze(1)).abs().argmin(dim=2)
        return codes.to(torch.uint8), torch.gather(v, 1, codes)

    def nearest_all(self, w: torch.Tensor) -> torch.Tensor:
        """w [rows, k * block] -> codes uint8 [rows, k * block], each the nearest value of its sub-block's grid."""
        t, rows = self.t, w.shape[0]
        ws = w.to(torch.float64).reshape(rows, -1, t.n_sub, t.sub, 1)
        return (ws - self.table.to(torch.float64).unsqueeze(3)).abs().argmin(dim=4).reshape(rows, -1).to(torch.uint8)


def _nearest_level(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index of the level nearest to each x (levels sorted ascending)."""
    return torch.bucketize(x, (levels[1:] + levels[:-1]) / 2)


def _weighted_error(w, imp, step, off, levels):
    """Error of rounding w [..., s] to the grid step * levels - off, with the codes re-chosen."""
    safe = torch.where(step != 0, step, torch.ones_like(step))
    t = levels[_nearest_level((w + off[..., None]) / safe[..., None], levels)]
    err = imp * (step[..., None] * t - off[..., None] - w) ** 2
    return err.sum(dim=-1)


def _fit_asymmetric(w, imp, levels):
    """w = a q - b with q in levels (0..Q), b >= 0: (a, b) per sub-block [...]."""
    q_max = float(levels[-1])
    lo = w.amin(dim=-1).clamp(max=0)
    span = (w.amax(dim=-1) - lo).clamp(min=torch.finfo(w.dtype).tiny)
    best_a, best_b = span / q_max, -lo
    best = _weighted_error(w, imp, best_a, best_b, levels)
    sw = imp.sum(dim=-1)
    sx = (imp * w).sum(dim=-1)
    for trial in _TRIALS.tolist():
        q = torch.clamp(torch.round((w - lo[..., None]) * ((q_max + trial) / span)[..., None]), 0, q_max)
        sq, sqq, sqx = (imp * q).sum(-1), (imp * q * q).sum(-1), (imp * q * w).sum(-1)
        det = sw * sqq - sq * sq
        ok = det > 0
        det = torch.where(ok, det, torch.ones_like(det))
        a = (sw * sqx - sq * sx) / det
        mn = (sqq * sx - sq * sqx) / det
        # The min must stay <= 0 (ggml stores it as a positive dmin * m): refit the scale alone.
        a = torch.where(mn > 0, sqx / sqq.clamp(min=1e-30), a)
        mn = mn.clamp(max=0)
        ok &= a > 0
        err = _weighted_error(w, imp, a, -mn, levels)
        better = ok & (err < best)
        best, best_a, best_b = torch.where(better, err, best), torch.where(better, a, best_a), \
            torch.where(better, -mn, best_b)
    return best_a, best_b


def _fit_symmetric(w, imp, levels):
    """w = a t with t in levels (a signed): a per sub-block [...]."""
    peak = torch.gather(w, -1, w.abs().argmax(dim=-1, keepdim=True)).squeeze(-1)
    zero = torch.zeros_like(peak)
    best_a, best = zero, _weighted_error(w, imp, zero, zero, levels)
    for anchor in (float(levels[0]), float(levels[-1])):  # the largest weight on the lowest or the highest level
        for trial in _TRIALS.tolist():
            a0 = peak / anchor * (1 + 0.1 * trial)
            a0 = torch.where(a0 != 0, a0, torch.ones_like(a0))  # an all-zero sub-block: any scale, error 0
            t = levels[_nearest_level(w / a0[..., None], levels)]
            a = (imp * t * w).sum(-1) / (imp * t * t).sum(-1).clamp(min=1e-30)
            err = _weighted_error(w, imp, a, zero, levels)
            better = err < best
            best, best_a = torch.where(better, err, best), torch.where(better, a, best_a)
    return best_a


def _quantize_subscales(scale: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scale [..., n_sub] float -> (d float16 [...], sc int16 [..., n_sub]) with d * sc ~ scale.

    d is set so the largest-magnitude scale takes the integer end: hi, or lo (the longer side) when
    the range is signed."""
    peak = torch.gather(scale, -1, scale.abs().argmax(dim=-1, keepdim=True)).squeeze(-1)
    end = float(lo if lo < 0 else hi)  # signed (Q3_K): the peak takes -32, its sign goes into d
    d = (peak / end).to(torch.float16)
    d32 = d.to(scale.dtype)[..., None]
    sc = torch.where(d32 != 0, torch.round(scale / torch.where(d32 != 0, d32, torch.ones_like(d32))),
                     torch.zeros_like(scale))
    return d, sc.clamp(lo, hi).to(torch.int16)


def fit(qtype: str, w: torch.Tensor, importance: torch.Tensor | None = None) -> Grid:
    """w [rows, k * block] (k whole blocks of every row), importance [k * block] >= 0 (None: equal)
    -> their grids. The search runs in float32: it only chooses the grid, which is then exact."""
    t = block_type(qtype)
    rows = w.shape[0]
    ws = w.to(torch.float32).reshape(rows, -1, t.n_sub, t.sub)
    imp = torch.ones(w.shape[1], device=w.device) if importance is None else importance.to(w.device)
    # Relative weights per sub-block (a column of zero importance still counts a little).
    imp = imp.to(torch.float32).reshape(1, -1, t.n_sub, t.sub)
    imp = imp / imp.mean(dim=-1, keepdim=True).clamp(min=1e-30) + 1e-3
    levels = torch.tensor(t.levels, dtype=torch.float32, device=w.device)
    if t.has_min:
        a, b = _fit_asymmetric(ws, imp, levels)
        d, sc = _quantize_subscales(a, 0, t.sc_range[1])
        dmin, m = _quantize_subscales(b, 0, t.sc_range[1])
    else:
        a = _fit_symmetric(ws, imp, levels)
        if t.sc_range == (1, 1):  # no sub-scales: d is the scale itself
            d, sc = a[..., 0].to(torch.float16), torch.ones_like(a, dtype=torch.int16)
        else:
            d, sc = _quantize_subscales(a, *t.sc_range)
        dmin, m = torch.zeros_like(d), torch.zeros_like(sc)
    return Grid(t, d, sc, dmin, m)


def round_to_nearest(weight: torch.Tensor, qtype: str, importance: torch.Tensor | None = None) -> GGMLBlocks:
    """weight [rows, cols] -> ``grid_type(qtype, cols)`` blocks, every weight rounded to its block's fitted grid."""
    if weight.dim() != 2:
        raise ConfigError(f"block quantization needs a 2-D weight, got shape {tuple(weight.shape)}")
    if not torch.isfinite(weight).all():
        raise ConfigError("weight contains NaN or Inf; fix the model before compressing it")
    spec = GGMLSpec(tuple(weight.shape), grid_type(qtype, weight.shape[1]))
    builder = FieldsBuilder(spec, weight.device)
    step = max(1, (1 << 20) // weight.shape[1])  # rows per chunk: bounds the [rows, cols, levels] distances
    for r0 in range(0, spec.shape[0], step):
        part = weight[r0:r0 + step]
        grid = fit(spec.qtype, part, importance)
        builder.set_rows(r0, grid, grid.nearest_all(part))
    return builder.build()


class FieldsBuilder:
    """Collects the grids and codes of a [rows, cols] weight into :class:`GGMLBlocks`."""

    def __init__(self, spec: GGMLSpec, device):
        rows, nb, t = spec.shape[0], spec.n_blocks, spec.type
        self.spec = spec
        self.codes = torch.zeros(spec.shape, dtype=torch.uint8, device=device)
        self.d = torch.zeros(rows, nb, dtype=torch.float16, device=device)
        self.dmin = torch.zeros_like(self.d)
        self.sc = torch.zeros(rows, nb, t.n_sub, dtype=torch.int16, device=device)
        self.m = torch.zeros_like(self.sc)
        self.grids: list[tuple[Grid, int] | None] = [None] * nb  # block -> (its grid, its index there)

    def set_blocks(self, first: int, grid: Grid) -> None:
        """``grid`` (of every row) for blocks first, first + 1, ..."""
        k = grid.d.shape[1]
        for i in range(k):
            self.grids[first + i] = (grid, i)
        blocks = slice(first, first + k)
        self.d[:, blocks], self.sc[:, blocks], self.dmin[:, blocks], self.m[:, blocks] = \
            grid.d, grid.sc, grid.dmin, grid.m

    def set_rows(self, first: int, grid: Grid, codes: torch.Tensor) -> None:
        """``grid`` and ``codes`` of every block for rows first, first + 1, ..."""
        rows = slice(first, first + codes.shape[0])
        self.d[rows], self.sc[rows], self.dmin[rows], self.m[rows] = grid.d, grid.sc, grid.dmin, grid.m
        self.codes[rows] = codes

    def nearest(self, w: torch.Tensor, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        """w [rows] of column ``col`` -> its codes and values on its block's grid (set by :meth:`set_blocks`)."""
        t = self.spec.type
        k, within = divmod(col, t.block)
        grid, i = self.grids[k]
        codes, values = grid.nearest(w[:, None], i, within // t.sub)
        self.codes[:, col] = codes[:, 0]
        return codes[:, 0], values[:, 0]

    def build(self) -> GGMLBlocks:
        t, n = self.spec.type, self.spec.shape[0] * self.spec.n_blocks
        fields = BlockFields(self.codes.reshape(n, t.block), self.d.reshape(n), self.sc.reshape(n, t.n_sub),
                             self.dmin.reshape(n), self.m.reshape(n, t.n_sub))
        return GGMLBlocks.from_fields(self.spec, fields)
