"""Column-by-column quantization with GPTQ's error feedback and lazy block updates.

Columns are quantized in order; after column j is rounded, its error divided by U[j, j] is
spread over the later columns with row j of U (the upper Cholesky factor of H^-1), which is the
optimal compensation of the output error tr(dW H dW^T) (Frantar et al. 2022). Updates to columns
outside the current block are deferred and applied once per block as one matrix product.

What "rounding a column" means is up to a :class:`ColumnQuantizer`: uniform grids for GPTQ,
binary codes with power-of-two scales for ShiftAddLLM. A quantizer whose parameters are shared
by ``group`` consecutive columns is told when a group starts, with that group's columns as they
are at that moment (already corrected by the errors of all earlier columns).
"""

from __future__ import annotations

from typing import Protocol

import torch


class ColumnQuantizer(Protocol):
    group: int  # columns sharing parameters (0: set once from the whole matrix)

    def start_group(self, col: int, weights: torch.Tensor) -> None:
        """weights [rows, group]: the current values of columns col .. col+group-1."""

    def quantize_column(self, col: int, w: torch.Tensor) -> torch.Tensor:
        """w [rows] -> its quantized value [rows]."""


def quantize_columns(weight: torch.Tensor, upper: torch.Tensor, quantizer: ColumnQuantizer,
                     block_size: int = 128) -> torch.Tensor:
    """weight [rows, cols], upper [cols, cols] -> quantized weight [rows, cols] (float64).

    Groups never straddle blocks: the block size is rounded up to a multiple of the group, so a
    group's parameters always see its columns with every earlier error already applied.
    """
    w = weight.to(torch.float64).clone()
    rows, cols = w.shape
    group = quantizer.group
    if group:
        block_size = -(-block_size // group) * group
    else:
        quantizer.start_group(0, w)
    out = torch.empty_like(w)
    for b0 in range(0, cols, block_size):
        b1 = min(b0 + block_size, cols)
        blk = w[:, b0:b1].clone()
        err = torch.empty_like(blk)
        u = upper[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            if group and col % group == 0:
                quantizer.start_group(col, blk[:, i:i + group])
            q = quantizer.quantize_column(col, blk[:, i])
            out[:, col] = q
            e = (blk[:, i] - q) / u[i, i]
            blk[:, i + 1:] -= e.unsqueeze(1) * u[i, i + 1:].unsqueeze(0)
            err[:, i] = e
        w[:, b1:] -= err @ upper[b0:b1, b1:]
    return out
