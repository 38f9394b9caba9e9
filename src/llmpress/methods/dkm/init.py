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
    rows = torch.arange(G, device=x.device)
    pick = _draw(n, gen)
    centers = [x[rows, pick]]
    best = _sq_dist(x, centers[0].unsqueeze(1)).squeeze(-1)
    for _ in range(1, k):
        p = n * best
        # Once every distinct value is a centre, further centres repeat values (harmless duplicates).
        p = torch.where(p.sum(1, keepdim=True) > 0, p, n)
        pick = _draw(p, gen)
        centers.append(x[rows, pick])
        best = torch.minimum(best, _sq_dist(x, centers[-1].unsqueeze(1)).squeeze(-1))
    c = torch.stack(centers, dim=1)
    if d == 1:
        return _lloyd_1d(x.squeeze(-1), n, c.squeeze(-1), lloyd_steps).unsqueeze(-1).to(values.device)
    for _ in range(lloyd_steps):
        c = _lloyd_step(x, n, c)
    return c.to(values.device)


def _lloyd_1d(x: torch.Tensor, n: torch.Tensor, c: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` Lloyd steps on scalars x [G, V] with weights n [G, V], from centroids c [G, K].

    The same steps as :func:`_lloyd_step`, in O(G K log V) each instead of O(G V): on sorted
    values a cluster is a contiguous run between two midpoints, and its mass and sum are
    differences of prefix sums. Returns the centroids in increasing order.
    """
    x, order = x.sort(dim=1)
    n = torch.gather(n, 1, order)
    zero = x.new_zeros(x.shape[0], 1)
    # float64 prefix sums: differences of large running totals would lose the small clusters.
    mass = torch.cat([zero.double(), n.double().cumsum(1)], 1)
    total = torch.cat([zero.double(), (n.double() * x.double()).cumsum(1)], 1)
    c = c.sort(dim=1).values
    edge = torch.full_like(zero, x.shape[1], dtype=torch.int64)
    for _ in range(steps):
        # a value equal to a midpoint joins the lower centroid, as _nearest's searchsorted does
        cut = torch.searchsorted(x, ((c[:, 1:] + c[:, :-1]) / 2).contiguous(), right=True)
        bounds = torch.cat([torch.zeros_like(edge), cut, edge], 1)
        m = mass.gather(1, bounds[:, 1:]) - mass.gather(1, bounds[:, :-1])
        t = total.gather(1, bounds[:, 1:]) - total.gather(1, bounds[:, :-1])
        c = torch.where(m > 0, (t / m.clamp_min(1e-300)).float(), c).sort(dim=1).values
    return c


def _draw(p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One index per row of p [G, V] (weights >= 0, a positive sum), drawn with probability
    proportional to p: inverse-CDF sampling, one pass instead of torch.multinomial's several."""
    cdf = p.double().cumsum(1)
    u = torch.rand(p.shape[0], 1, generator=gen, dtype=torch.float64, device=p.device) * cdf[:, -1:]
    # right=True skips zero-weight rows: a draw lands strictly below the next positive step.
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(p.shape[1] - 1)


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
    mass = x.new_zeros(G, K).scatter_add_(1, near, n)
    total = x.new_zeros(G, K, d).scatter_add_(1, near.unsqueeze(-1).expand(-1, -1, d), x * n.unsqueeze(-1))
    mass = mass.unsqueeze(-1)
    return torch.where(mass > 0, total / mass.clamp_min(1e-30), c)


def kmeans_1d_exact(values: torch.Tensor, counts: torch.Tensor, k: int) -> torch.Tensor:
    """Optimal 1-D k-means (minimum weighted sum of squares) of each group, by dynamic programming.

    values [G, V, 1], counts [G, V] (0 = padding) -> centroids [G, k, 1] float32.
    Clusters of sorted scalars are contiguous runs, so with D_m[j] the best cost of the first j
    values in m clusters, D_m[j] = min_i D_{m-1}[i] + cost(i, j), and the best split i is
    non-decreasing in j (as in Wang & Song's Ckmeans.1d.dp). Each layer is filled by divide and
    conquer over j, one recursion level at a time for all segments at once: O(k V log V).
    A group with fewer distinct values than k repeats its last value.
    """
    out = []
    for x, n in zip(values.detach().double().cpu(), counts.double().cpu()):
        keep = n > 0
        xs, order = x[keep, 0].sort()
        out.append(_exact_1d(xs, n[keep][order], k))
    return torch.stack(out).unsqueeze(-1).float().to(values.device)


def _exact_1d(x: torch.Tensor, n: torch.Tensor, k: int) -> torch.Tensor:
    V = x.numel()
    if V <= k:
        return torch.cat([x, x[-1:].expand(k - V)])
    zero = x.new_zeros(1)
    w, s1, s2 = (torch.cat([zero, torch.cumsum(t, 0)]) for t in (n, n * x, n * x * x))

    def cost(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:  # values i..j-1
        mass = w[j] - w[i]
        return (s2[j] - s2[i] - (s1[j] - s1[i]) ** 2 / mass).clamp_min(0)

    j_all = torch.arange(V + 1, device=x.device)
    prev = torch.where(j_all > 0, cost(torch.zeros_like(j_all), j_all.clamp_min(1)), x.new_zeros(V + 1))
    splits = []
    for m in range(2, k + 1):
        cur = torch.full((V + 1,), float("inf"), dtype=x.dtype, device=x.device)
        arg = torch.zeros(V + 1, dtype=torch.int64, device=x.device)
        # segments: j in [jlo, jhi], best split searched in [olo, ohi]
        jlo, jhi = torch.tensor([m], device=x.device), torch.tensor([V], device=x.device)
        olo, ohi = torch.tensor([m - 1], device=x.device), torch.tensor([V - 1], device=x.device)
        while jlo.numel():
            mid = (jlo + jhi) // 2
            top = torch.minimum(ohi, mid - 1)
            width = top - olo + 1
            seg = torch.repeat_interleave(torch.arange(mid.numel(), device=x.device), width)
            start = torch.cumsum(width, 0) - width
            i = olo[seg] + torch.arange(seg.numel(), device=x.device) - start[seg]
            val = prev[i] + cost(i, mid[seg])
            best = x.new_full((mid.numel(),), float("inf")).scatter_reduce(0, seg, val, "amin")
            first = torch.where(val <= best[seg], i, torch.full_like(i, V + 1))
            best_i = torch.full_like(mid, V + 1).scatter_reduce(0, seg, first, "amin")
            cur[mid], arg[mid] = best, best_i
            left, right = jlo <= mid - 1, mid + 1 <= jhi
            jlo, jhi, olo, ohi = (torch.cat([a[left], b[right]]) for a, b in
                                  ((jlo, mid + 1), (mid - 1, jhi), (olo, best_i), (best_i, ohi)))
        splits.append(arg)
        prev = cur
    bounds, j = [V], V
    for arg in reversed(splits):
        j = int(arg[j])
        bounds.append(j)
    bounds = torch.tensor([0] + bounds[::-1], device=x.device)
    lo, hi = bounds[:-1], bounds[1:]
    return (s1[hi] - s1[lo]) / (w[hi] - w[lo])
