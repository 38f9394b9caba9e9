"""First-step centroids: k-means++ seeding (Arthur & Vassilvitskii, 2007) refined by Lloyd steps.

Runs on distinct values weighted by their counts, which is the same objective as over every
weight and far cheaper for 16-bit weights. Seeded: the same weights and seed give the same bytes.
"""

from __future__ import annotations

import torch


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """x [G, V, d], c [G, K, d] -> [G, V, K]."""
    return (x.unsqueeze(2) - c.unsqueeze(1)).pow(2).sum(-1)


def kmeans_plus_plus(values: torch.Tensor, counts: torch.Tensor, k: int, seed: int = 0,
                     lloyd_steps: int = 25) -> torch.Tensor:
    """values [G, V, d], counts [G, V] (0 = padding) -> centroids [G, k, d] float32."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x, n = values.float().cpu(), counts.float().cpu()
    G, V, d = x.shape
    rows = torch.arange(G)
    pick = torch.multinomial(n, 1, generator=gen).squeeze(1)
    centers = [x[rows, pick]]
    best = _sq_dist(x, centers[0].unsqueeze(1)).squeeze(-1)
    for _ in range(1, k):
        p = n * best
        # Once every distinct value is a centre, further centres repeat values (harmless duplicates).
        p = torch.where(p.sum(1, keepdim=True) > 0, p, n)
        pick = torch.multinomial(p, 1, generator=gen).squeeze(1)
        centers.append(x[rows, pick])
        best = torch.minimum(best, _sq_dist(x, centers[-1].unsqueeze(1)).squeeze(-1))
    c = torch.stack(centers, dim=1)
    for _ in range(lloyd_steps):
        c = _lloyd_step(x, n, c)
    return c.to(values.device)


def _nearest(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index [G, V] of the nearest centroid. Scalars: a binary search between sorted centroids
    (O(V log K) instead of an O(V K) distance matrix, which matters at 8 bits)."""
    if x.shape[-1] != 1:
        return _sq_dist(x, c).argmin(-1)
    sc, order = c.squeeze(-1).sort(dim=1)
    mid = (sc[:, 1:] + sc[:, :-1]) / 2
    return torch.gather(order, 1, torch.searchsorted(mid, x.squeeze(-1).contiguous()))


def _lloyd_step(x: torch.Tensor, n: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """One hard k-means step with weights ``n``; an empty cluster keeps its centroid."""
    G, K, d = c.shape
    near = _nearest(x, c)
    mass = torch.zeros(G, K).scatter_add_(1, near, n)
    total = torch.zeros(G, K, d).scatter_add_(1, near.unsqueeze(-1).expand(-1, -1, d), x * n.unsqueeze(-1))
    mass = mass.unsqueeze(-1)
    return torch.where(mass > 0, total / mass.clamp_min(1e-30), c)
