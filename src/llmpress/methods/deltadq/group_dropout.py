"""Group-wise dropout of a delta matrix (DeltaDQ, Jiang et al. 2024) and its inverse.

Each row is split into groups of ``group`` consecutive input columns; every group keeps exactly
``keep`` = round((1 - p) * group) entries at seeded random positions (the mask is regenerated from
the seed, never stored) and they are rescaled by group / keep = 1 / (1 - p), so the expected
output of every group, hence of the row, is unchanged.
"""

from __future__ import annotations

import zlib

import torch

from llmpress.formats import dropout_masks
from llmpress.formats.sparse_delta import SparseDeltaTensor, from_kept


def layer_seed(seed: int, name: str) -> int:
    """A per-layer seed derived from the run seed and the layer name (stable across runs)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (1 << 62)


def keep_for(group: int, fraction: float) -> int:
    """Entries kept per group of ``group`` at keep fraction ``fraction``: round((1 - p) g)."""
    return int(round(fraction * group))


def group_dropout(delta: torch.Tensor, group: int, keep: int, seed: int, bits: int,
                  parts_bits: int = 0, unbiased: bool = False) -> SparseDeltaTensor:
    """delta [rows, cols] -> sparse format keeping ``keep`` of every ``group`` entries per row."""
    d = delta.detach().to(torch.float32)
    rows, cols = d.shape
    col = dropout_masks.group_positions(rows, cols, group, keep, seed).to(d.device)
    row = torch.arange(rows, device=d.device).unsqueeze(1).expand_as(col)
    # Rescale by the exact kept share of each entry's own group (the last group may be shorter).
    full = (cols // group) * group
    last = cols - full
    scale = torch.full(col.shape, group / keep if keep else 0.0, device=d.device)
    if last:
        k_last = dropout_masks.ragged_keep(keep, group, last)
        scale[col >= full] = last / k_last if k_last else 0.0
    values = d[row, col] * scale
    return from_kept((rows, cols), row.reshape(-1), col.reshape(-1), values.reshape(-1), bits, parts_bits,
                     mask="group", unbiased=unbiased, seed=seed, group=group, keep=keep)
