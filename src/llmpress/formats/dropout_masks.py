"""Which entries of a [rows, cols] delta survive dropout, regenerated from a seed (never stored).

Positions are returned per row as ascending column indices; the "canonical order" of kept
entries is row-major with ascending columns, and every delta format stores its values in it.

- Group-wise dropout (DeltaDQ, Jiang et al. 2024): each row is split into groups of ``group``
  consecutive columns (a shorter last group when ``group`` does not divide ``cols``); each full
  group keeps exactly ``keep`` entries, the last group of width r keeps round(keep * r / group),
  chosen uniformly at random.
- Bernoulli dropout (DARE, Yu et al. 2023): every entry survives independently with
  probability ``1 - p``, so the count per row varies.

Both draw from a CPU ``torch.Generator`` seeded with ``seed``: the same seed gives the same mask
on every machine.
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError


def ragged_keep(keep: int, group: int, width: int) -> int:
    """Entries kept in a last group of ``width`` < ``group`` columns: round((1 - p) * width)."""
    return int(round(keep * width / group))


def group_kept_count(cols: int, group: int, keep: int) -> int:
    """Kept entries per row under group-wise dropout."""
    full, last = divmod(cols, group)
    return full * keep + (ragged_keep(keep, group, last) if last else 0)


def group_positions(rows: int, cols: int, group: int, keep: int, seed: int) -> torch.Tensor:
    """Column indices [rows, kept per row] (int64, ascending per row) kept by group-wise dropout."""
    if not 1 <= group <= cols:
        raise ConfigError(f"group size must be in 1..{cols} (the row width), got {group}")
    if not 0 <= keep <= group:
        raise ConfigError(f"a group of {group} cannot keep {keep} entries")
    # Seeded masks are drawn on the CPU, so one seed is one mask on every device.
    gen = torch.Generator().manual_seed(seed)
    full, last = divmod(cols, group)
    parts = []
    if full:
        scores = torch.rand(rows, full, group, generator=gen, device="cpu")
        chosen = scores.argsort(dim=2)[..., :keep]
        offsets = (torch.arange(full, device="cpu") * group).view(1, full, 1)
        parts.append((chosen + offsets).reshape(rows, full * keep))
    if last:
        k_last = ragged_keep(keep, group, last)
        scores = torch.rand(rows, last, generator=gen, device="cpu")
        parts.append(scores.argsort(dim=1)[:, :k_last] + full * group)
    return torch.cat(parts, dim=1).sort(dim=1).values


def bernoulli_mask(rows: int, cols: int, p: float, seed: int) -> torch.Tensor:
    """Boolean [rows, cols]: True where an entry survives DARE's dropout with rate ``p``."""
    if not 0 <= p < 1:
        raise ConfigError(f"drop rate must be in [0, 1), got {p}")
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(rows, cols, generator=gen, device="cpu") >= p  # CPU: see group_positions
