"""The two steps of one soft k-means iteration (DKM, Cho et al., ICLR 2022), shared by every path.

Every implementation calls these same functions on its own rows (all weights for the naive
reference, distinct values with counts for the memory-saving paths), so an attention entry of a
value is computed by the same float operations whichever path computes it.
"""

from __future__ import annotations

import torch


def attention(x: torch.Tensor, c: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft assignment A = softmax(-||x - c||^2 / tau) over the centroids.

    x: [G, V, d] points, c: [G, K, d] centroids, tau: absolute temperature (weight units squared).
    Returns [G, V, K].
    """
    d2 = (x.unsqueeze(2) - c.unsqueeze(1)).pow(2).sum(-1)
    return torch.softmax(d2 / -tau, dim=-1)


def update(a: torch.Tensor, x: torch.Tensor, c: torch.Tensor, counts: torch.Tensor | None = None,
           probe: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Centroid update c_j = sum_i a_ij x_i / sum_i a_ij (rows weighted by ``counts`` [G, V] if given).

    A centroid with no attention mass left (underflow at a tiny tau) keeps its position instead
    of becoming 0/0. ``probe`` adds zero tensors (num [G, K, d], den [G, K]) whose gradients are
    the gradients w.r.t. the sums; see :mod:`llmpress.methods.dkm.values`. Returns [G, K, d].
    """
    at = a.transpose(1, 2)
    if counts is None:
        num, den = at @ x, a.sum(1)
    else:  # weights applied to the points, not to A: no second [G, V, K] tensor for autograd to keep
        num, den = at @ (x * counts.unsqueeze(-1)), (at @ counts.unsqueeze(-1)).squeeze(-1)
    if probe is not None:
        num, den = num + probe[0], den + probe[1]
    den = den.unsqueeze(-1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), c)


def converged(c_new: torch.Tensor, c: torch.Tensor, epsilon: float) -> bool:
    """Every centroid of every group moved by at most ``epsilon`` (all groups stop together)."""
    return epsilon > 0 and bool((c_new - c).abs().max() <= epsilon)
