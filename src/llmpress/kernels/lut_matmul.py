"""Multiplication-less y = x W^T for BCQ weights, the look-up way (ShiftAddLLM, You et al. 2024).

For every chunk of 8 inputs, all 256 signed sums +-x_0 +-x_1 ... +-x_7 are built once per input
vector, with 8 rounds of adds (:func:`partial_sum_tables`). A packed byte of a bit-plane row is
exactly an index into that table, so B_i x is one look-up and one add per byte. The scales
2^e enter as exponent shifts (``torch.ldexp``), on the table results when a whole byte shares
a scale (``col_group`` a multiple of 8, "lat"), or on the activations before the tables are
built when scales change inside a byte (``col_group`` 1, 2 or 4, "acc"), which then needs one
set of tables per plane and row block.

This is an exact reference in plain torch, written for clarity; on a CPU it is slower than a
dense matmul on the dequantized weight, which it equals up to float rounding.
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQTensor

# Upper bound on the bytes of one gathered [tokens, rows, chunks] block of partial sums.
_BLOCK_BYTES = 1 << 26


def partial_sum_tables(x: torch.Tensor) -> torch.Tensor:
    """x [T, C, 8] -> [T, C, 256]: entry v = sum_k (+x_k if bit k of v is set else -x_k)."""
    table = torch.zeros(*x.shape[:2], 1, dtype=x.dtype, device=x.device)
    for k in range(8):
        xk = x[:, :, k:k + 1]
        # The new bit is the high bit so far: entries without it come first, then those with it.
        table = torch.cat([table - xk, table + xk], dim=2)
    return table


def _lookup(table: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """table [T, C, 256], planes uint8 [rows, C] -> partial sums [T, rows, C]."""
    t, c, _ = table.shape
    rows = planes.shape[0]
    flat = (planes.long() + torch.arange(c, device=planes.device) * 256).reshape(-1)
    return table.reshape(t, c * 256)[:, flat].reshape(t, rows, c)


def _shift(values: torch.Tensor, exponents: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """sum_t (-1)^s_t * ldexp(values, e_t); exponents/negative [..., terms] broadcast against values."""
    out = torch.zeros_like(values)
    for t in range(exponents.shape[-1]):
        shifted = torch.ldexp(values, exponents[..., t].to(torch.int32))
        out = torch.where(negative[..., t], out - shifted, out + shifted)
    return out


def bcq_lut_matmul(x: torch.Tensor, weight: BCQTensor) -> torch.Tensor:
    """x [T, in] (float32) -> y [T, out] = x W^T with W = ``weight.dequantize()``."""
    spec = weight.spec
    rows, cols = spec.shape
    if x.dim() != 2 or x.shape[1] != cols:
        raise ConfigError(f"LUT matmul takes x [tokens, {cols}], got {tuple(x.shape)}")
    q, rg, cg = spec.bits, spec.row_group, spec.col_group
    if cg % 8 and 8 % cg:
        raise ConfigError(f"LUT matmul needs a column group that divides 8 or is a multiple of 8, got {cg}")
    chunks = cols // 8
    exps, neg = weight.exponents, weight.negative()          # [q, rb, cb, terms]
    planes = weight.planes                                   # [q, rows, chunks]
    step = max(1, _BLOCK_BYTES // (4 * rows * chunks))
    out = []
    for t0 in range(0, x.shape[0], step):
        xs = x[t0:t0 + step]
        y = torch.zeros(xs.shape[0], rows, dtype=x.dtype, device=x.device)
        if cg % 8 == 0:
            table = partial_sum_tables(xs.reshape(-1, chunks, 8))
            for i in range(q):
                part = _lookup(table, planes[i])                       # [T, rows, chunks]
                part = part.reshape(part.shape[0], rows, cols // cg, cg // 8).sum(3)
                e = exps[i].repeat_interleave(rg, 0)                   # [rows, cb, terms]
                s = neg[i].repeat_interleave(rg, 0)
                y += _shift(part, e, s).sum(2)
        else:
            for i in range(q):
                for a in range(rows // rg):
                    e = exps[i, a].repeat_interleave(cg, 0)            # [cols, terms]
                    s = neg[i, a].repeat_interleave(cg, 0)
                    table = partial_sum_tables(_shift(xs, e, s).reshape(-1, chunks, 8))
                    part = _lookup(table, planes[i, a * rg:(a + 1) * rg])
                    y[:, a * rg:(a + 1) * rg] += part.sum(2)
        out.append(y)
    return torch.cat(out)
