"""DKM through 16-bit bit patterns: nothing per weight is saved for backward.

Beyond eDKM's uniquification: the bit pattern of a 16-bit weight already is an index into the
table of all 65536 values of its dtype, so neither ``unique()`` nor a stored index list is
needed. The forward histograms the patterns of each group, runs the soft k-means over the
65536-row table (:mod:`llmpress.methods.dkm.values`) and reads each weight's clustered value by
its pattern (only the patterns in use become table rows). Backward re-derives the patterns and
counts from the weight itself, so the saved
state is the weight (a parameter, already resident) and the starting centroids: O(K) bytes,
independent of the number of weights.

fp32 master weights are clustered through their 16-bit view: the pattern of the weight rounded
to ``value_dtype`` (float16 by default: finer than bfloat16 for |w| < 65504, which is every
LLM weight), with the gradient passed straight through the rounding to the fp32 master. A
weight already stored in float16/bfloat16 uses its own patterns.
"""

from __future__ import annotations

import torch

from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm import values
from llmpress.methods.dkm.unique import counts_of

PATTERNS = 1 << 16
CHUNK = 1 << 20     # points per pass over the weight
SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def view_dtype(weight_dtype: torch.dtype, value_dtype: torch.dtype) -> torch.dtype:
    """The 16-bit dtype whose patterns index a weight: its own if 16-bit, else ``value_dtype``."""
    return weight_dtype if weight_dtype in SIXTEEN_BIT else value_dtype


def patterns(points: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[G, P, 1] weights -> [G, P] int64 bit patterns in [0, 65536) of their ``dtype`` rounding."""
    return points.detach().squeeze(-1).to(dtype).view(torch.uint16).long()


class PatternTable:
    """The 16-bit patterns of ``points`` [G, P, 1] as a table of distinct values.

    ``x`` [G, U, 1] float32 values, ``counts`` [G, U] (each point counted with its ``mass`` [G, P]
    if given), and :meth:`chunks` maps points to rows.
    The rows are the U patterns some group uses, in pattern order (a 65536-entry row map built
    from the histogram, no sort): table work is O(U K), and a small layer uses few patterns.
    A row a group does not use reads 0 there: it carries no weight in any sum and is never indexed, and this keeps
    bfloat16's huge values (whose squared distances overflow to inf, and inf * 0 = NaN) out of
    the arithmetic. Points are read in chunks, so per-weight temporaries stay small.
    """

    def __init__(self, points: torch.Tensor, dtype: torch.dtype, mass: torch.Tensor | None = None):
        self.points, self.dtype = points, dtype
        G, P, _ = points.shape
        present = torch.zeros(G, PATTERNS, device=points.device)
        counts = present if mass is None else torch.zeros_like(present)
        for s in range(0, P, CHUNK):
            codes = patterns(points[:, s:s + CHUNK], dtype)
            present += counts_of(codes, PATTERNS)
            if mass is not None:  # weighted counts; presence still decides which rows are real
                counts += counts_of(codes, PATTERNS, mass[:, s:s + CHUNK])
        v = torch.arange(PATTERNS, dtype=torch.int32, device=points.device).to(torch.int16).view(dtype).float()
        used = present.sum(0) > 0
        self.row_of = torch.cumsum(used, 0) - 1
        self.counts = counts[:, used]
        v = v[used]
        self.x = torch.where(present[:, used] > 0, v, torch.zeros_like(self.counts)).unsqueeze(-1)

    def chunks(self):
        """(slice, rows [G, chunk] int64) over the points."""
        for s in range(0, self.points.shape[1], CHUNK):
            codes = patterns(self.points[:, s:s + CHUNK], self.dtype)
            yield slice(s, s + CHUNK), self.row_of[codes]


class BitPatternDKM(torch.autograd.Function):
    """points [G, P, 1] -> (clustered points [G, P, 1], final centroids [G, K, 1] (no gradient)).

    ``importance`` [rows, cols] and ``config``: point weights, as for :class:`.unique.UniqueDKM`
    (saved as given: a view of a [cols] vector keeps the saved state free of per-weight tensors)."""

    @staticmethod
    def forward(ctx, points, c0, tau: float, max_iter: int, epsilon: float, value_dtype: torch.dtype,
                importance=None, config=None):
        dtype = view_dtype(points.dtype, value_dtype)
        mass = pts.point_mass(importance, config) if importance is not None else None
        t = PatternTable(points, dtype, mass)
        f, c_final, iterations = values.forward(t.x, t.counts, c0, tau, max_iter, epsilon)
        out = torch.empty(points.shape, dtype=torch.float32, device=points.device)
        for where, rows in t.chunks():
            out[:, where] = torch.gather(f, 1, rows.unsqueeze(-1))
        ctx.save_for_backward(points, c0, importance)
        ctx.setup = (iterations, tau, dtype, config)
        ctx.mark_non_differentiable(c_final)
        return out, c_final

    @staticmethod
    def backward(ctx, grad_out, _grad_centroids):
        points, c0, importance = ctx.saved_tensors
        iterations, tau, dtype, config = ctx.setup
        mass = pts.point_mass(importance, config) if importance is not None else None
        t = PatternTable(points, dtype, mass)
        grad = grad_out.float()
        grad_sum = torch.zeros_like(t.x)
        for where, rows in t.chunks():
            grad_sum.scatter_add_(1, rows.unsqueeze(-1), grad[:, where])
        jac, h = values.backward_tables(t.x, t.counts, grad_sum, c0, tau, iterations)
        grad_points = torch.empty(points.shape, dtype=points.dtype, device=points.device)
        for where, rows in t.chunks():
            m = mass[:, where] if mass is not None else None
            grad_points[:, where] = values.gather_grad(grad[:, where], rows, jac, h, m)
        return grad_points, None, None, None, None, None, None, None
