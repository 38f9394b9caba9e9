"""A sparse fine-tuning delta: which entries survive (a seeded mask, or stored column indices) and
their values (float16, or k-bit uniform codes split by separate quantization).

Formats of DeltaDQ (group mask + codes), DARE (Bernoulli mask + float16 values or codes) and
magnitude pruning (stored indices + codes). Values are stored in canonical order (row-major,
ascending columns) and already include any dropout rescaling, so the dense delta is simply the
values scattered to their positions.

Stored tensors (nothing else; the spec is JSON metadata):
    values      float16 [n]                      when ``bits`` == 16
    membership  uint8, n x parts_bits bits       when ``bits`` <= 8 (separate quantization)
    low         uint8, n x (bits - parts_bits)   when ``bits`` <= 8
    grid        float32 [2] = (lo, step)         when ``bits`` <= 8
    indices     uint8, n x ceil(log2 cols) bits  when ``mask`` == "indices" (low byte stream,
                                                 then the high bits, each bit-packed)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack, dropout_masks, separate_codes

MASKS = ("group", "bernoulli", "indices")
FLOAT_BITS = 16


def index_bits(cols: int) -> int:
    return max(1, (cols - 1).bit_length())


def pack_wide(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integers of up to 16 bits: the low byte of each, then the remaining high bits."""
    if bits <= 8:
        return bitpack.pack(values, bits)
    v = values.reshape(-1).to(torch.int64)
    return torch.cat([bitpack.pack(v & 0xFF, 8), bitpack.pack(v >> 8, bits - 8)])


def unpack_wide(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    if bits <= 8:
        return bitpack.unpack(packed, bits, n).to(torch.int64)
    low = bitpack.unpack(packed[:n], 8, n).to(torch.int64)
    return low | (bitpack.unpack(packed[n:], bits - 8, n).to(torch.int64) << 8)


@dataclass(frozen=True)
class SparseDeltaSpec:
    """Shape [rows, cols]; ``mask`` one of :data:`MASKS` with its parameters; ``n`` kept entries;
    ``bits`` 16 (float16 values) or 1..8 (uniform codes with ``parts_bits`` membership bits)."""

    shape: tuple[int, int]
    mask: str
    n: int
    bits: int
    parts_bits: int = 0
    seed: int = 0
    group: int = 0
    keep: int = 0
    p: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"a delta needs a non-empty 2-D shape, got {self.shape}")
        if self.mask not in MASKS:
            raise ConfigError(f"unknown delta mask {self.mask!r}; one of {MASKS}")
        if self.bits != FLOAT_BITS:
            separate_codes.check_bits(self.bits, self.parts_bits)
        if self.mask == "group":
            expected = self.shape[0] * dropout_masks.group_kept_count(self.shape[1], self.group, self.keep)
            if self.n != expected:
                raise ConfigError(f"group mask g={self.group} keep={self.keep} keeps {expected} entries, spec says {self.n}")

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class SparseDeltaTensor:
    spec: SparseDeltaSpec
    values: torch.Tensor | None = None
    membership: torch.Tensor | None = None
    low: torch.Tensor | None = None
    grid: torch.Tensor | None = None
    indices: torch.Tensor | None = None

    FORMAT = "sparse_delta"

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("values",) if self.spec.bits == FLOAT_BITS else ("membership", "low", "grid")
        names += ("indices",) if self.spec.mask == "indices" else ()
        return {k: getattr(self, k) for k in names}

    def meta(self) -> dict:
        s = self.spec
        return {"format": self.FORMAT, "shape": list(s.shape), "mask": s.mask, "n": s.n, "bits": s.bits,
                "parts_bits": s.parts_bits, "seed": s.seed, "group": s.group, "keep": s.keep, "p": s.p}

    @classmethod
    def from_meta(cls, meta: dict) -> "SparseDeltaTensor":
        spec = SparseDeltaSpec(tuple(meta["shape"]), meta["mask"], int(meta["n"]), int(meta["bits"]),
                               int(meta["parts_bits"]), int(meta["seed"]), int(meta["group"]), int(meta["keep"]),
                               float(meta["p"]))
        n, u8 = spec.n, torch.uint8
        t = {}
        if spec.bits == FLOAT_BITS:
            t["values"] = torch.zeros(n, dtype=torch.float16)
        else:
            t["membership"] = torch.zeros(bitpack.packed_nbytes(n, spec.parts_bits) if spec.parts_bits else 0, dtype=u8)
            low_bits = spec.bits - spec.parts_bits
            t["low"] = torch.zeros(bitpack.packed_nbytes(n, low_bits) if low_bits else 0, dtype=u8)
            t["grid"] = torch.zeros(2, dtype=torch.float32)
        if spec.mask == "indices":
            b = index_bits(spec.shape[1])
            size = bitpack.packed_nbytes(n, b) if b <= 8 else n + bitpack.packed_nbytes(n, b - 8)
            t["indices"] = torch.zeros(size, dtype=u8)
        return cls(spec, **t)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, column) int64 indices [n] of the kept entries, in canonical order."""
        rows, cols = self.spec.shape
        s = self.spec
        if s.mask == "group":
            col = dropout_masks.group_positions(rows, cols, s.group, s.keep, s.seed)
            row = torch.arange(rows, device=col.device).unsqueeze(1).expand_as(col)
            return row.reshape(-1), col.reshape(-1)
        if s.mask == "bernoulli":
            row, col = dropout_masks.bernoulli_mask(rows, cols, s.p, s.seed).nonzero(as_tuple=True)
            return row, col
        col = unpack_wide(self.indices, index_bits(cols), s.n)
        return torch.arange(rows, device=col.device).repeat_interleave(s.n // rows), col

    def codes(self) -> torch.Tensor:
        """The k-bit codes [n] (int64), rebuilt exactly from membership and low bits."""
        return separate_codes.unpack_split(self.membership, self.low, self.spec.n, self.spec.bits,
                                           self.spec.parts_bits)

    def kept_values(self) -> torch.Tensor:
        """float32 [n] values in canonical order."""
        if self.spec.bits == FLOAT_BITS:
            return self.values.to(torch.float32)
        lo, step = self.grid.tolist()
        return separate_codes.decode(self.codes(), lo, step)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense delta [rows, cols]."""
        values = self.kept_values()
        row, col = (t.to(values.device) for t in self.positions())
        dense = torch.zeros(self.spec.shape, dtype=torch.float32, device=values.device)
        dense[row, col] = values
        return dense.to(dtype)


def from_kept(shape: tuple[int, int], row: torch.Tensor, col: torch.Tensor, values: torch.Tensor, bits: int,
              parts_bits: int = 0, mask: str = "group", unbiased: bool = False, **mask_params) -> SparseDeltaTensor:
    """Encode kept ``values`` [n] (canonical order; ``row``/``col`` their positions) into the format;
    ``unbiased``: see :func:`llmpress.formats.separate_codes.unbiased_grid`."""
    n = values.numel()
    spec = SparseDeltaSpec(tuple(shape), mask, n, bits, parts_bits if bits != FLOAT_BITS else 0, **mask_params)
    t: dict[str, torch.Tensor] = {}
    if bits == FLOAT_BITS:
        t["values"] = values.to(torch.float16).contiguous()
    else:
        lo, step = separate_codes.uniform_grid(values, bits)
        codes = separate_codes.encode(values, bits, lo, step)
        if unbiased:  # the same codes, decoded on a stretched grid
            lo, step = separate_codes.unbiased_grid(values, codes, lo, step)
        t["membership"], t["low"] = separate_codes.pack_split(codes, bits, spec.parts_bits)
        t["grid"] = torch.tensor([lo, step], dtype=torch.float32, device=values.device)
    if mask == "indices":
        t["indices"] = pack_wide(col, index_bits(shape[1]))
    return SparseDeltaTensor(spec, **t)
