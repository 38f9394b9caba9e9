"""Where tensors saved for backward live: eDKM's marshaling (a) and sharding (c), and a meter.

Autograd keeps every tensor an operation saves for backward until backward runs. DKM saves many
large ones, and several are one storage seen again (A is saved by softmax, then A^T by the
matmul that updates the centroids). eDKM (Cho et al., IEEE CAL 2024):

(a) moves saved tensors to another device (the CPU) and copies each storage only once: a tensor
    whose storage was already moved becomes a reference to the moved copy plus the view
    geometry (sizes, strides, offset) that rebuilds it;
(c) keeps only this rank's 1/R share of every large saved storage and all-gathers the rest when
    backward unpacks it (data-parallel ranks hold identical weights and compute identical DKM
    state, so the shares add up to the whole).

Both are one context around any forward pass, not DKM-specific:

    with SavedTensorHooks(device="cpu", shard=True) as hooks:
        loss = model(x).sum()
    loss.backward()            # unpacked (gathered, moved back) on demand
    hooks.stats                # what was saved, moved and kept

Views are recognised through their base tensor, the tensor the autograd graph's view nodes
(PermuteBackward0, ViewBackward0, ...) lead back to; the stored copy is looked up by the base's
storage and only while the base is alive, so a recycled address is never mistaken for it.
Parameters (leaf tensors that require grad) and views of them stay where they are: they are
resident for the optimizer anyway.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.autograd.graph import saved_tensors_hooks

from llmpress.methods.dkm import shard as sharding

# Smaller storages (centroids, counters) are kept whole: a collective costs more than they do.
MIN_SHARD_BYTES = 1 << 16


@dataclass
class SavedStats:
    """What forward passes handed to autograd for backward (bytes are storage sizes)."""

    packed: int = 0            # tensors saved, parameters excluded
    packed_bytes: int = 0      # their sizes summed: what copying every saved tensor would hold
    distinct_bytes: int = 0    # sizes of their distinct storages
    kept_bytes: int = 0        # what this rank keeps for backward, after sharding
    moved_bytes: int = 0       # of which held on the marshaling device (copied there if elsewhere)
    referenced: int = 0        # saved tensors served by a storage stored earlier
    parameters: int = 0        # saved parameters (kept in place, not counted)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _is_parameter(t: torch.Tensor) -> bool:
    base = t._base if t._base is not None else t
    return base.is_leaf and base.requires_grad


def move(raw: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``raw`` on ``device`` (itself when already there). From a GPU to the host the copy lands in
    pinned memory and is not waited for: it is ordered on the stream before any kernel that could
    reuse the source's memory, and the copy back (also non-blocking) is ordered after it."""
    if raw.device == device:
        return raw
    if raw.is_cuda and device.type == "cpu":
        out = torch.empty(raw.shape, dtype=raw.dtype, device="cpu", pin_memory=True)
        return out.copy_(raw, non_blocking=True)
    return raw.to(device)


def _storage_bytes(t: torch.Tensor) -> torch.Tensor:
    """The whole storage under ``t`` as a flat uint8 tensor (no copy)."""
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())


class SavedTensorHooks(saved_tensors_hooks):
    """Meter, and optionally move (``device``) and shard (``shard``), what autograd saves.

    With neither, tensors stay exactly where they are and only ``stats`` is kept.
    ``stats`` may be shared between several contexts to add them up.
    """

    def __init__(self, device: str | torch.device | None = None, shard: bool = False,
                 stats: SavedStats | None = None):
        self.device = torch.device(device) if device is not None else None
        self.shard = shard
        self.stats = stats if stats is not None else SavedStats()
        self._seen: set[int] = set()
        # storage address -> (weak reference to a live tensor on it, stored entry)
        self._stored: dict[int, tuple[weakref.ref, tuple]] = {}
        super().__init__(self._pack, self._unpack)

    def __enter__(self) -> "SavedTensorHooks":
        super().__enter__()
        return self

    def _pack(self, t: torch.Tensor):
        if _is_parameter(t):
            self.stats.parameters += 1
            return t
        self.stats.packed += 1
        self.stats.packed_bytes += t.numel() * t.element_size()
        if self.device is None and not self.shard:
            # Autograd keeps saved tensors alive until backward: their addresses cannot be reused.
            ptr = t.untyped_storage().data_ptr()
            if ptr not in self._seen:
                self._seen.add(ptr)
                self.stats.distinct_bytes += t.untyped_storage().nbytes()
                self.stats.kept_bytes += t.untyped_storage().nbytes()
            else:
                self.stats.referenced += 1
            return t
        entry = self._lookup(t)
        if entry is None:
            entry = self._store(t)
        else:
            self.stats.referenced += 1
        return (entry, t.dtype, t.size(), t.stride(), t.storage_offset(), t.device)

    def _lookup(self, t: torch.Tensor):
        found = self._stored.get(t.untyped_storage().data_ptr())
        return found[1] if found is not None and found[0]() is not None else None

    def _store(self, t: torch.Tensor) -> tuple:
        base = t._base if t._base is not None else t
        raw = _storage_bytes(base)
        nbytes = raw.numel()
        sharded = self.shard and nbytes >= MIN_SHARD_BYTES and sharding.world()[1] > 1
        if sharded:
            raw = sharding.keep_shard(raw)
        if self.device is not None:
            raw = move(raw, self.device)
            self.stats.moved_bytes += raw.numel()
        entry = (raw, nbytes, sharded)
        self._stored[base.untyped_storage().data_ptr()] = (weakref.ref(base), entry)
        self.stats.distinct_bytes += nbytes
        self.stats.kept_bytes += raw.numel()
        return entry

    @staticmethod
    def _unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        (raw, nbytes, sharded), dtype, size, stride, offset, device = packed
        if sharded:
            raw = sharding.gather_shards(raw, nbytes)
        raw = raw.to(device, non_blocking=raw.is_pinned())
        return torch.empty(0, dtype=dtype, device=device).set_(raw.untyped_storage(), offset, size, stride)


def marshal(device: str | torch.device = "cpu", stats: SavedStats | None = None) -> SavedTensorHooks:
    """eDKM cross-device tensor marshaling: saved tensors move to ``device``, each storage once."""
    return SavedTensorHooks(device=device, stats=stats)


def SavedTensorMeter(stats: SavedStats | None = None) -> SavedTensorHooks:  # noqa: N802 - reads as a class
    """Count what autograd saves, changing nothing."""
    return SavedTensorHooks(stats=stats)
