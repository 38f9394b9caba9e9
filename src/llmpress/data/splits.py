"""Seeded, reproducible index splits."""

from __future__ import annotations

import torch


def holdout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices), disjoint and covering range(n); held-out has
    round(fraction * n) items (at least 1 when fraction > 0). Same seed, same split."""
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    k = max(1, round(fraction * n)) if fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[k:]), sorted(perm[:k])
