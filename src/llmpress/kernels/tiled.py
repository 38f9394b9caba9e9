"""Portable kernels in plain torch, for every format on any device: W decoded a tile of rows at a time.

What runs where no native kernel does (another device, no C compiler, a layout the native code
does not read). Never holds more than one tile of dense weight.
"""

from __future__ import annotations

import torch

# Bytes of float32 weight one tile decodes.
TILE_BYTES = 1 << 22


def _tile(fmt) -> int:
    return max(1, TILE_BYTES // (4 * fmt.spec.shape[1]))


def matmul(x: torch.Tensor, fmt) -> torch.Tensor:
    """x [T, in] float32 -> y [T, out] = x W^T."""
    out_features = fmt.spec.shape[0]
    step = _tile(fmt)
    parts = [x @ fmt.dequantize_rows(r0, min(r0 + step, out_features)).to(x.device).T
             for r0 in range(0, out_features, step)]
    return torch.cat(parts, dim=1)


def rows(fmt, ids: torch.Tensor) -> torch.Tensor:
    """ids int64 [n] -> rows of W [n, cols] float32; each distinct row decoded once."""
    ids = ids.reshape(-1)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= fmt.spec.shape[0]):
        raise IndexError(f"row ids must lie in [0, {fmt.spec.shape[0]})")
    unique, inverse = torch.unique(ids, return_inverse=True)
    decoded = torch.cat([fmt.dequantize_rows(r, r + 1) for r in unique.tolist()]) if unique.numel() else \
        torch.empty(0, fmt.spec.shape[1], device=ids.device)
    return decoded.to(ids.device)[inverse]


def matmul_transposed(g: torch.Tensor, fmt) -> torch.Tensor:
    """g [T, out] float32 -> g W [T, in]: the input gradient of y = x W^T, tile by tile."""
    out_features = fmt.spec.shape[0]
    step = _tile(fmt)
    total = None
    for r0 in range(0, out_features, step):
        r1 = min(r0 + step, out_features)
        part = g[:, r0:r1] @ fmt.dequantize_rows(r0, r1).to(g.device)
        total = part if total is None else total + part
    return total


class PackedMatmul(torch.autograd.Function):
    """y = kernel(x) with the input gradient g W computed from the packed weight (frozen: no weight gradient),
    so float parameters before a compressed layer can still be trained."""

    @staticmethod
    def forward(ctx, x, run, fmt):
        ctx.fmt = fmt
        return run(x)

    @staticmethod
    def backward(ctx, g):
        return matmul_transposed(g.to(torch.float32), ctx.fmt), None, None
