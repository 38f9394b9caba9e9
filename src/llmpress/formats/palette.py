"""Palettized weights: a lookup table of centroids and a low-bit index per weight (or vector).

A weight [rows, cols] (rows = output channels) is cut as DKM clusters it
(:mod:`llmpress.methods.dkm.points`): G = rows / group_size groups of consecutive rows, each
with its own table of 2**bits entries of ``cluster_dim`` values; every row is cut into
vectors of ``cluster_dim`` consecutive weights, each replaced by the index of a table entry.

Stored: the tables as float16 [G, 2**bits, cluster_dim] and the indices bit-packed at ``bits``
bits, point after point, group after group. Nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack


@dataclass(frozen=True)
class PaletteSpec:
    """Shape parameters of a :class:`PaletteTensor`; ``group_size`` 0 means one table per tensor."""

    shape: tuple[int, int]
    bits: int
    group_size: int = 0
    cluster_dim: int = 1

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"palette format needs a non-empty 2-D shape, got {self.shape}")
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ConfigError(f"palette bits must be in 1..8, got {self.bits!r}")
        rows, cols = self.shape
        if self.group_size < 0 or (self.group_size and rows % self.group_size):
            raise ConfigError(f"palette group_size {self.group_size} must divide the {rows} rows (0 = one table)")
        if self.cluster_dim < 1 or cols % self.cluster_dim:
            raise ConfigError(f"palette cluster_dim {self.cluster_dim} must divide the {cols} columns")

    @property
    def n_groups(self) -> int:
        return self.shape[0] // self.group_size if self.group_size else 1

    @property
    def n_entries(self) -> int:
        return 1 << self.bits

    @property
    def points_per_group(self) -> int:
        return self.shape[0] * self.shape[1] // self.cluster_dim // self.n_groups

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class PaletteTensor:
    """``lut`` float16 [G, 2**bits, cluster_dim] and ``indices``, packed uint8."""

    spec: PaletteSpec
    lut: torch.Tensor
    indices: torch.Tensor

    FORMAT = "palette"

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"lut": self.lut, "indices": self.indices}

    def meta(self) -> dict:
        return {"format": self.FORMAT, "shape": list(self.spec.shape), "bits": self.spec.bits,
                "group_size": self.spec.group_size, "cluster_dim": self.spec.cluster_dim}

    @classmethod
    def empty(cls, spec: PaletteSpec) -> "PaletteTensor":
        """Correctly shaped placeholders, to be filled by loading a state dict."""
        n = spec.n_groups * spec.points_per_group
        return cls(spec, torch.zeros(spec.n_groups, spec.n_entries, spec.cluster_dim, dtype=torch.float16),
                   torch.zeros(bitpack.packed_nbytes(n, spec.bits), dtype=torch.uint8))

    @classmethod
    def from_meta(cls, meta: dict) -> "PaletteTensor":
        return cls.empty(PaletteSpec(tuple(meta["shape"]), int(meta["bits"]), int(meta["group_size"]),
                                     int(meta.get("cluster_dim", 1))))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def int_indices(self) -> torch.Tensor:
        """Indices as int64 [G, points_per_group]."""
        s = self.spec
        return bitpack.unpack(self.indices, s.bits, s.n_groups * s.points_per_group).long().view(s.n_groups, -1)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.dequantize_rows(0, self.spec.shape[0], dtype)

    def dequantize_rows(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``start:stop`` of the dequantized weight, [stop - start, cols], reading only their bytes."""
        s = self.spec
        cols, d, n = s.shape[1], s.cluster_dim, stop - start
        per_row = cols // d  # points are laid out row after row, so a row's points are contiguous
        idx = bitpack.unpack_range(self.indices, s.bits, start * per_row, n * per_row).long().view(n, per_row)
        dev = self.lut.device
        group = (torch.arange(start, stop, device=dev) // s.group_size if s.group_size
                 else torch.zeros(n, dtype=torch.long, device=dev))
        table = self.lut.to(torch.float32)[group]                              # [n, K, d]
        w = torch.gather(table, 1, idx.unsqueeze(-1).expand(-1, -1, d))
        return w.reshape(n, cols).to(dtype)


def nearest(points: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Index [G, P] of the nearest table entry for points [G, P, d] given lut [G, K, d] (ties: lowest)."""
    G, P, d = points.shape
    chunk = max(1, (1 << 24) // (G * lut.shape[1] * d))  # bounds the [G, chunk, K, d] distance block
    out = torch.empty(G, P, dtype=torch.int64, device=points.device)
    for start in range(0, P, chunk):
        block = points[:, start:start + chunk].float()
        out[:, start:start + chunk] = (block.unsqueeze(2) - lut.float().unsqueeze(1)).pow(2).sum(-1).argmin(-1)
    return out


def palettize(weight: torch.Tensor, lut: torch.Tensor, group_size: int = 0) -> PaletteTensor:
    """Hard-assign every point of ``weight`` [rows, cols] to its nearest entry of ``lut`` [G, K, d].

    The table is rounded to float16 first, so the indices are nearest for the stored table.
    """
    G, K, d = lut.shape
    bits = K.bit_length() - 1
    if K != 1 << bits:
        raise ConfigError(f"a palette needs 2**bits entries, got {K}")
    spec = PaletteSpec(tuple(weight.shape), bits, group_size, d)
    if spec.n_groups != G:
        raise ConfigError(f"the table has {G} groups, group_size {group_size} on {tuple(weight.shape)} gives "
                          f"{spec.n_groups}")
    lut16 = lut.detach().to(weight.device, torch.float16)
    idx = nearest(weight.detach().reshape(G, -1, d), lut16)
    return PaletteTensor(spec, lut16, bitpack.pack(idx, bits))
