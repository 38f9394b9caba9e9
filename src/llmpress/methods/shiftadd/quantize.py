"""ShiftAddLLM's multi-objective quantization of one weight matrix (You et al. 2024, Sec. 4.2).

The weight objective is BCQ's: each group of weights sharing scales is fit by binary codes
(greedy + alternating refinement, :mod:`.bcq`), the scales rounded to (additive) powers of two
(:mod:`.shifts`) and the codes re-chosen for the rounded scales. The output-activation objective
is GPTQ's: columns are quantized in order and each column's error is compensated on the columns
not yet quantized through the inverse Hessian of the calibration inputs
(:mod:`llmpress.methods.error_feedback`). Scales are fit when their group of columns is
reached, on the weights as the feedback has already corrected them, so the two objectives do
not fight: in "acc" mode every column gets scales fit to it alone, in "lat" mode every block of
8 columns. The scales of ``fit_window`` columns are fit in one batch when the first of them is
reached; the feedback from those columns onto each other then moves codes, not scales.

Two refinements of that scheme: columns are visited in act order (blocks of the mode's column
group by decreasing calibration energy, as ShiftAddLLM's act-order option), and when a scale is
shared by several columns ("lat") its fit weights each column by what an error there costs in
output error, 1 / [H^-1]_jj, the weight GPTQ's own error bound gives it.
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQSpec, BCQTensor
from llmpress.methods.error_feedback import quantize_columns
from llmpress.methods.hessian import check_hessian, inverse_cholesky
from llmpress.methods.shiftadd.bcq import bcq, code_levels, codewords, group_error, nearest_codes
from llmpress.methods.shiftadd.config import ShiftAddConfig
from llmpress.methods.shiftadd.shifts import round_to_shifts


def layer_spec(shape: tuple[int, int], config: ShiftAddConfig, bits: int | None = None, name: str = "?") -> BCQSpec:
    """The format a layer of ``shape`` gets; a clear error naming the layer when it cannot."""
    rows, cols = shape
    row_group = config.row_group or rows
    if rows % row_group:
        raise ConfigError(f"layer {name}: row_group {row_group} does not divide its {rows} output rows; "
                          f"choose a divisor of {rows} (or 0 for one group per column)")
    try:
        return BCQSpec((rows, cols), bits or config.bits, row_group, config.col_group, config.terms)
    except ConfigError as exc:
        raise ConfigError(f"layer {name}: {exc}") from None


class _BinaryColumns:
    """Column quantizer of :func:`quantize_columns`: BCQ + shift rounding per group of columns;
    records codes, exponents, signs and the error the rounding of scales adds.

    Scales of ``window`` consecutive columns (whole column groups) are fit together, in one
    batched BCQ, when the first of those columns is reached. ``cost`` [cols]: what a squared
    error in each column costs (None = the same for all); the fit weights each value by it."""

    def __init__(self, spec: BCQSpec, rounds: int, window: int, cost: torch.Tensor | None = None,
                 device: torch.device | str = "cpu"):
        q, rows, cols = spec.bits, *spec.shape
        self.spec, self.rounds, self.cost = spec, rounds, cost
        self.group = window if cols % window == 0 else spec.col_group
        self.words = codewords(q, device=device)
        self.codes = torch.zeros(q, rows, cols, dtype=torch.bool, device=device)
        self.exponents = torch.zeros(*spec.scale_shape, spec.terms, dtype=torch.int16, device=device)
        self.negative = torch.zeros(*spec.scale_shape, spec.terms, dtype=torch.bool, device=device)
        self.start = 0
        self.levels: torch.Tensor | None = None  # [blocks in window, rows, 2^q]: values a weight can take
        self.bcq_error = 0.0    # squared weight error of the fitted groups with float scales
        self.shift_error = 0.0  # ... and with the scales rounded to shifts (codes re-chosen)

    def start_group(self, col: int, weights: torch.Tensor) -> None:
        s = self.spec
        rows, width = weights.shape
        rb, nb = rows // s.row_group, width // s.col_group
        # one BCQ group per (row block, column block): its rows x columns, row-major
        x = weights.reshape(rb, s.row_group, nb, s.col_group).permute(0, 2, 1, 3).reshape(rb * nb, -1)
        v = None
        if self.cost is not None and s.col_group > 1:  # within one column every value costs the same
            v = self.cost[col:col + width].reshape(1, nb, 1, s.col_group).expand(rb, nb, s.row_group, s.col_group)
            v = v.reshape(rb * nb, -1)
        alpha, codes = bcq(x, s.bits, self.rounds, v)
        exps, neg, rounded = round_to_shifts(alpha, s.terms)
        self.bcq_error += float(group_error(x, alpha, codes).sum())
        self.shift_error += float(group_error(x, rounded, nearest_codes(x, rounded)).sum())
        first = col // s.col_group
        self.exponents[:, :, first:first + nb] = exps.reshape(rb, nb, s.bits, s.terms).permute(2, 0, 1, 3)
        self.negative[:, :, first:first + nb] = neg.reshape(rb, nb, s.bits, s.terms).permute(2, 0, 1, 3)
        levels = code_levels(rounded, self.words).reshape(rb, nb, -1).transpose(0, 1)
        self.levels = levels.repeat_interleave(s.row_group, 1)
        self.start = col

    def quantize_column(self, col: int, w: torch.Tensor) -> torch.Tensor:
        levels = self.levels[(col - self.start) // self.spec.col_group]
        best = (w.unsqueeze(1) - levels).abs().argmin(dim=1)
        self.codes[:, :, col] = (self.words[best] > 0).T
        return levels.gather(1, best.unsqueeze(1)).squeeze(1)

    def result(self, blocks: torch.Tensor | None = None) -> BCQTensor:
        """The format; ``blocks``: the column-block order the columns were visited in (act order),
        undone here so that the stored blocks lie in the layer's own column order."""
        codes, exps, neg = self.codes, self.exponents, self.negative
        if blocks is not None:
            inv = torch.argsort(blocks)
            cg = self.spec.col_group
            cols = (inv.unsqueeze(1) * cg + torch.arange(cg, device=inv.device)).reshape(-1)
            codes, exps, neg = codes[:, :, cols], exps[:, :, inv], neg[:, :, inv]
        return BCQTensor.from_codes(codes, exps, neg, self.spec)


def block_order(hessian: torch.Tensor, col_group: int) -> torch.Tensor:
    """Act order over blocks of ``col_group`` columns (the columns sharing scales): blocks by
    decreasing summed H[j, j], the inputs with the most energy first, while the most later
    columns are left to absorb their error (GPTQ's act order, block-wise as ShiftAddLLM does for
    "lat"). Moving whole blocks keeps every block's columns together, so the format is unchanged."""
    energy = torch.diagonal(hessian).to(torch.float64).reshape(-1, col_group).sum(1)
    return torch.argsort(energy, descending=True, stable=True)


def quantize(weight: torch.Tensor, hessian: torch.Tensor | None, config: ShiftAddConfig, name: str = "?",
             bits: int | None = None, report: dict | None = None) -> BCQTensor:
    """weight [out, in], hessian [in, in] (X^T X of the layer's calibration inputs; None = the
    weight objective alone, no error feedback) -> BCQ format with ``bits`` (default config.bits).

    ``report``, when given, receives the relative weight error of BCQ with float scales and
    with shift scales (``bcq_rel_error``, ``shift_rel_error``) over all fitted groups.
    """
    spec = layer_spec(tuple(weight.shape), config, bits, name)
    w = weight.detach().to(torch.float64).clone()
    blocks = cost = None
    if hessian is None:
        upper = torch.eye(spec.shape[1], dtype=torch.float64, device=w.device)
    else:
        h = check_hessian(hessian, spec.shape[1], name)
        if config.act_order:
            cg = spec.col_group
            blocks = block_order(h, cg)
            order = (blocks.unsqueeze(1) * cg + torch.arange(cg, device=blocks.device)).reshape(-1)
            w, h = w[:, order], h[order][:, order]
        inv = inverse_cholesky(h, config.damp, name)
        w[:, inv.dead] = 0
        upper = inv.upper
        # GPTQ's cost of rounding column j by e (before feedback repairs what it can):
        # e^2 / [H^-1]_jj = (e / U_jj)^2, so a shared scale is fit with these weights
        cost = torch.diagonal(upper).pow(-2)
    columns = _BinaryColumns(spec, config.rounds, config.fit_window, cost, w.device)
    quantize_columns(w, upper, columns, config.block_size)
    if report is not None:
        norm = float(w.pow(2).sum()) or 1.0
        report.update(bcq_rel_error=columns.bcq_error / norm, shift_rel_error=columns.shift_error / norm)
    return columns.result(blocks)


def quantize_plain(weight: torch.Tensor, config: ShiftAddConfig, bits: int | None = None, name: str = "?") -> BCQTensor:
    """The weight objective alone, every group at once (no feedback, hence vectorised): what
    :func:`quantize` gives with ``hessian=None``, in one pass. Used to measure per-layer error
    for the bit allocation."""
    spec = layer_spec(tuple(weight.shape), config, bits, name)
    rows, cols = spec.shape
    rg, cg = spec.row_group, spec.col_group
    rb, cb = rows // rg, cols // cg
    x = weight.detach().to(torch.float64).reshape(rb, rg, cb, cg).permute(0, 2, 1, 3).reshape(rb * cb, rg * cg)
    alpha, _ = bcq(x, spec.bits, config.rounds)
    exps, neg, rounded = round_to_shifts(alpha, spec.terms)
    codes = nearest_codes(x, rounded)  # [rb*cb, q, rg*cg]
    q = spec.bits
    codes = codes.reshape(rb, cb, q, rg, cg).permute(2, 0, 3, 1, 4).reshape(q, rows, cols) > 0
    exps = exps.reshape(rb, cb, q, spec.terms).permute(2, 0, 1, 3)
    neg = neg.reshape(rb, cb, q, spec.terms).permute(2, 0, 1, 3)
    return BCQTensor.from_codes(codes, exps, neg, spec)
