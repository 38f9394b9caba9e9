"""Split a 1-D tensor across torch.distributed ranks and gather it back (eDKM sharding, (c)).

Without an initialised process group the world is one rank and nothing is split.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _chunk(numel: int, size: int) -> int:
    return -(-numel // size)


def keep_shard(flat: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of the 1-D tensor ``flat`` (a copy, so the rest can be freed)."""
    rank, size = world()
    if size == 1:
        return flat
    chunk = _chunk(flat.numel(), size)
    return flat[rank * chunk:(rank + 1) * chunk].clone()


def gather_shards(shard: torch.Tensor, numel: int) -> torch.Tensor:
    """The whole 1-D tensor of ``numel`` entries from every rank's :func:`keep_shard` share."""
    _, size = world()
    if size == 1:
        return shard
    chunk = _chunk(numel, size)
    padded = torch.zeros(chunk, dtype=shard.dtype, device=shard.device)
    padded[: shard.numel()] = shard
    # Sent as bytes: gloo has no int16, and bytes are what the list is.
    raw = padded.view(torch.uint8)
    parts = [torch.empty_like(raw) for _ in range(size)]
    dist.all_gather(parts, raw)
    return torch.cat(parts).view(shard.dtype)[:numel]
