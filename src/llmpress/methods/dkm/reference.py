"""Naive DKM: soft k-means over every weight, differentiated by plain autograd.

This is the reference every memory-saving path is tested against. It is also the memory
problem eDKM solves: each iteration keeps [N, K] tensors (distances, attention) alive for
backward, so a 4096x4096 matrix at 3 bits holds ~1 GB per iteration.
"""

from __future__ import annotations

import torch

from llmpress.methods.dkm import steps


def soft_kmeans(points: torch.Tensor, c0: torch.Tensor, tau: float, max_iter: int,
                epsilon: float, mass: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """points [G, P, d] (differentiable), c0 [G, K, d] starting centroids (constant), mass [G, P]
    (constant importance of each point in the centroid update; None = 1 each).

    Returns (clustered points A C [G, P, d], final centroids [G, K, d], iterations run).
    The gradient reaches ``points`` through every iteration.
    """
    dtype = torch.promote_types(points.dtype, torch.float32)
    x, c = points.to(dtype), c0.to(dtype)
    mass = mass.to(dtype) if mass is not None else None
    for it in range(1, max_iter + 1):
        a = steps.attention(x, c, tau)
        c_new = steps.update(a, x, c, mass)
        done = steps.converged(c_new, c, epsilon)
        c = c_new
        if done:
            break
    return a @ c, c, it
