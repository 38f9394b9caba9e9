"""eDKM technique (b), weight uniquification.

The attention map is computed over the distinct values of each group (at most 65536 for 16-bit
weights) and every weight keeps only an index into them. Exact: a weight's attention depends on
its value alone. Saved for backward: the index list (int16 when the table has at most 65536 rows;
sharding, (c), splits it across ranks like any large saved tensor), the value table and the
starting centroids. The per-value tables are recomputed in backward
(:mod:`llmpress.methods.dkm.values`); they are small.
"""

from __future__ import annotations

import torch

from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm import values
from llmpress.methods.dkm.distinct import distinct

_INT16_OFFSET = 1 << 15


def _narrow(idx: torch.Tensor, rows: int) -> torch.Tensor:
    """Index list in the fewest bytes: int16 (shifted by 2**15) for tables of <= 65536 rows."""
    return (idx - _INT16_OFFSET).to(torch.int16) if rows <= 1 << 16 else idx.to(torch.int32)


def _widen(stored: torch.Tensor) -> torch.Tensor:
    return stored.long() + _INT16_OFFSET if stored.dtype == torch.int16 else stored.long()


def counts_of(idx: torch.Tensor, rows: int, mass: torch.Tensor | None = None) -> torch.Tensor:
    """[G, rows] float32 histogram of the table row each point indexes; idx [G, P]. With ``mass``
    [G, P] each point counts with its mass (importance) instead of 1."""
    G = idx.shape[0]
    if G > 1:
        idx = idx + torch.arange(G, device=idx.device).unsqueeze(1) * rows
    weights = mass.reshape(-1).double() if mass is not None else None
    return torch.bincount(idx.reshape(-1), weights, minlength=G * rows).view(G, rows).float()


class UniqueDKM(torch.autograd.Function):
    """points [G, P, d] -> (clustered points [G, P, d], final centroids [G, K, d] (no gradient)).

    ``importance`` [rows, cols] (see :func:`.points.importance_view`; None = every point counts
    once) weights each point in the centroid update; it is saved as given (a view of a [cols]
    vector costs no per-weight memory) and ``config`` maps it to points."""

    @staticmethod
    def forward(ctx, points, c0, tau: float, max_iter: int, epsilon: float, importance=None, config=None):
        x, counts, idx = distinct(points)
        mass = pts.point_mass(importance, config) if importance is not None else None
        if mass is not None:
            counts = counts_of(idx, x.shape[1], mass)
        f, c_final, iterations = values.forward(x, counts, c0, tau, max_iter, epsilon)
        out = torch.gather(f, 1, idx.unsqueeze(-1).expand(-1, -1, f.shape[-1]))
        ctx.save_for_backward(_narrow(idx, x.shape[1]), x, c0, importance)
        ctx.setup = (iterations, tau, points.dtype, config)
        ctx.mark_non_differentiable(c_final)
        return out, c_final

    @staticmethod
    def backward(ctx, grad_out, _grad_centroids):
        stored, x, c0, importance = ctx.saved_tensors
        iterations, tau, dtype, config = ctx.setup
        idx = _widen(stored)
        mass = pts.point_mass(importance, config) if importance is not None else None
        grad = grad_out.float()
        rows = x.shape[1]
        jac, h = values.backward_tables(x, counts_of(idx, rows, mass), values.scatter_rows(grad, idx, rows), c0, tau,
                                        iterations)
        return values.gather_grad(grad, idx, jac, h, mass).to(dtype), None, None, None, None, None, None
