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

from llmpress.methods.dkm import values
from llmpress.methods.dkm.unique import counts_of

PATTERNS = 1 << 16
COMPACT_ABOVE = 32  # centroids beyond which the table keeps only the patterns in use
SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def view_dtype(weight_dtype: torch.dtype, value_dtype: torch.dtype) -> torch.dtype:
    """The 16-bit dtype whose patterns index a weight: its own if 16-bit, else ``value_dtype``."""
    return weight_dtype if weight_dtype in SIXTEEN_BIT else value_dtype


def patterns(points: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[G, P, 1] weights -> [G, P] int64 bit patterns in [0, 65536) of their ``dtype`` rounding."""
    return points.detach().squeeze(-1).to(dtype).view(torch.uint16).long()


def table(codes: torch.Tensor, dtype: torch.dtype, n_clusters: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The patterns ``codes`` [G, P] of ``dtype`` as a table: (values [G, U, 1] float32,
    counts [G, U], row of each point [G, P]).

    With many centroids the rows are only the U patterns some group uses, in pattern order (a
    65536-entry row map built from the histogram, no sort), since table work is O(U K); with
    few, all 65536 patterns are rows and a pattern is its own row (no per-weight remapping).
    A row a group does not use reads 0 there: it carries no weight in
    any sum and is never indexed, and this keeps bfloat16's huge values (whose squared distances
    overflow to inf, and inf * 0 = NaN) out of the arithmetic.
    """
    counts = counts_of(codes, PATTERNS)                             # [G, 65536]
    v = torch.arange(PATTERNS, dtype=torch.int32, device=codes.device).to(torch.int16).view(dtype).float()
    rows = codes
    if n_clusters > COMPACT_ABOVE:
        used = counts.sum(0) > 0
        rows = (torch.cumsum(used, 0) - 1)[codes]
        v, counts = v[used], counts[:, used]
    x = torch.where(counts > 0, v, torch.zeros_like(counts))
    return x.unsqueeze(-1), counts, rows


class BitPatternDKM(torch.autograd.Function):
    """points [G, P, 1] -> (clustered points [G, P, 1], final centroids [G, K, 1] (no gradient))."""

    @staticmethod
    def forward(ctx, points, c0, tau: float, max_iter: int, epsilon: float, value_dtype: torch.dtype):
        dtype = view_dtype(points.dtype, value_dtype)
        x, counts, rows = table(patterns(points, dtype), dtype, c0.shape[1])
        f, c_final, iterations = values.forward(x, counts, c0, tau, max_iter, epsilon)
        out = torch.gather(f, 1, rows.unsqueeze(-1))
        ctx.save_for_backward(points, c0)
        ctx.setup = (iterations, tau, dtype)
        ctx.mark_non_differentiable(c_final)
        return out, c_final

    @staticmethod
    def backward(ctx, grad_out, _grad_centroids):
        points, c0 = ctx.saved_tensors
        iterations, tau, dtype = ctx.setup
        x, counts, rows = table(patterns(points, dtype), dtype, c0.shape[1])
        grad = grad_out.float()
        jac, h = values.backward_tables(x, counts, values.scatter_rows(grad, rows, x.shape[1]), c0, tau, iterations)
        return values.gather_grad(grad, rows, jac, h).to(points.dtype), None, None, None, None, None
