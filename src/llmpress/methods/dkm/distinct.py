"""Distinct values of each group of points, their counts, and each point's index into them.

eDKM's uniquification rests on this: 16-bit weights take at most 65536 distinct values, so
tables over the distinct values replace [N, K] tensors. Groups have different numbers of
distinct values; tables are padded to the largest with zero-count rows, which add nothing to
any sum and are never indexed.
"""

from __future__ import annotations

import torch


def distinct(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """points [G, P, d] -> (values [G, V, d] float32, counts [G, V] float32, idx [G, P] int64).

    values[g, idx[g, p]] == points[g, p]; values are sorted within a group (deterministic).
    """
    G, P, d = points.shape
    per_group = []
    for g in range(G):
        rows = points[g].detach()
        if d == 1:
            v, inv, n = torch.unique(rows.reshape(-1), sorted=True, return_inverse=True, return_counts=True)
            v = v.unsqueeze(-1)
        else:
            v, inv, n = torch.unique(rows, dim=0, sorted=True, return_inverse=True, return_counts=True)
        per_group.append((v, inv, n))
    width = max(v.shape[0] for v, _, _ in per_group)
    values = points.new_zeros(G, width, d, dtype=torch.float32)
    counts = torch.zeros(G, width, dtype=torch.float32, device=points.device)
    idx = torch.empty(G, P, dtype=torch.int64, device=points.device)
    for g, (v, inv, n) in enumerate(per_group):
        values[g, : v.shape[0]] = v.float()
        counts[g, : n.shape[0]] = n.float()
        idx[g] = inv.reshape(-1)
    return values, counts, idx
