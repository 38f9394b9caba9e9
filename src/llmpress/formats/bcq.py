"""Binary-coding quantization (BCQ) with power-of-two scales: the storage format of ShiftAddLLM.

A weight matrix W [rows, cols] (rows = output channels) is stored as ``bits`` = q binary
matrices B_i in {-1, +1}^{rows x cols} and scales alpha_i, one per plane, per block of
``row_group`` rows and per block of ``col_group`` columns (You et al., "ShiftAddLLM", NeurIPS
2024):

    W ~= sum_i alpha_i[row // row_group, col // col_group] * B_i

Every scale is a sum of ``terms`` signed powers of two, alpha = sum_t (-1)^s_t * 2^e_t, so
multiplying by it is ``terms`` shifts and adds. ``terms`` = 1 is a plain power of two (PoT),
more terms an additive power of two (APoT).

Stored, and nothing else:
- ``planes`` uint8 [q, rows, cols / 8]: bit-plane i, row r, byte c holds B_i[r, 8c:8c+8], bit k
  (least significant first) = 1 where B_i[r, 8c+k] = +1. One byte is one 8-input look-up index.
- ``exponents`` int8 [q, row_blocks, col_blocks, terms]: e_t.
- ``signs`` uint8, the sign bits s_t of the same shape, bit-packed 8 per byte (1 = negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack

# An exponent this small stands for a zero term: 2**-128 underflows to 0 in float16 and is a
# float32 denormal far below any weight.
ZERO_EXPONENT = -128


@dataclass(frozen=True)
class BCQSpec:
    """Shape parameters of a :class:`BCQTensor`. Both group sizes must divide their dimension;
    ``cols`` must be a multiple of 8 (whole bytes per bit-plane row)."""

    shape: tuple[int, int]
    bits: int
    row_group: int
    col_group: int
    terms: int = 1

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"BCQ format needs a non-empty 2-D shape, got {self.shape}")
        rows, cols = self.shape
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ConfigError(f"BCQ bits (binary planes) must be an integer in 1..8, got {self.bits!r}")
        if cols % 8:
            raise ConfigError(f"BCQ packs 8 input columns per byte; {cols} columns is not a multiple of 8")
        if self.row_group < 1 or rows % self.row_group:
            raise ConfigError(f"row group {self.row_group} must divide the {rows} rows; pick a divisor of {rows}")
        if self.col_group < 1 or cols % self.col_group:
            raise ConfigError(f"column group {self.col_group} must divide the {cols} columns; "
                              f"pick a divisor of {cols}")
        if not 1 <= self.terms <= 4:
            raise ConfigError(f"power-of-two terms per scale must be in 1..4, got {self.terms}")

    @property
    def scale_shape(self) -> tuple[int, int, int]:
        """(planes, row blocks, column blocks)."""
        return self.bits, self.shape[0] // self.row_group, self.shape[1] // self.col_group

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def n_scales(self) -> int:
        q, r, c = self.scale_shape
        return q * r * c

    @property
    def nbytes(self) -> int:
        """Stored bytes, from the shape alone (the bit allocator prices layers with it)."""
        n_terms = self.n_scales * self.terms
        return self.bits * self.numel // 8 + n_terms + bitpack.packed_nbytes(n_terms, 1)


def _sign_bits(n: int) -> int:
    return bitpack.packed_nbytes(n, 1)


@dataclass
class BCQTensor:
    spec: BCQSpec
    planes: torch.Tensor
    exponents: torch.Tensor
    signs: torch.Tensor

    FORMAT = "bcq"

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"planes": self.planes, "exponents": self.exponents, "signs": self.signs}

    def meta(self) -> dict:
        s = self.spec
        return {"format": self.FORMAT, "shape": list(s.shape), "bits": s.bits, "row_group": s.row_group,
                "col_group": s.col_group, "terms": s.terms, "binary_codes": True}

    @classmethod
    def empty(cls, spec: BCQSpec) -> "BCQTensor":
        rows, cols = spec.shape
        n_terms = spec.n_scales * spec.terms
        return cls(spec, torch.zeros(spec.bits, rows, cols // 8, dtype=torch.uint8),
                   torch.zeros(*spec.scale_shape, spec.terms, dtype=torch.int8),
                   torch.zeros(_sign_bits(n_terms), dtype=torch.uint8))

    @classmethod
    def from_meta(cls, meta: dict) -> "BCQTensor":
        return cls.empty(BCQSpec(tuple(meta["shape"]), int(meta["bits"]), int(meta["row_group"]),
                                 int(meta["col_group"]), int(meta["terms"])))

    @classmethod
    def from_codes(cls, codes: torch.Tensor, exponents: torch.Tensor, negative: torch.Tensor,
                   spec: BCQSpec) -> "BCQTensor":
        """codes: bool/0-1 [q, rows, cols] (1 = +1); exponents int [q, rb, cb, terms]; negative: bool, same shape."""
        q, rows, cols = spec.bits, *spec.shape
        if tuple(codes.shape) != (q, rows, cols):
            raise ConfigError(f"codes have shape {tuple(codes.shape)}, the spec needs {(q, rows, cols)}")
        if tuple(exponents.shape) != (*spec.scale_shape, spec.terms) or exponents.shape != negative.shape:
            raise ConfigError(f"exponents/signs have shape {tuple(exponents.shape)}/{tuple(negative.shape)}, "
                              f"the spec needs {(*spec.scale_shape, spec.terms)}")
        if int(exponents.min()) < -128 or int(exponents.max()) > 127:
            raise ConfigError("scale exponents must fit in int8 (-128..127)")
        planes = bitpack.pack(codes.to(torch.uint8), 1).view(q, rows, cols // 8)
        return cls(spec, planes, exponents.to(torch.int8), bitpack.pack(negative.to(torch.uint8), 1))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def codes(self) -> torch.Tensor:
        """B as float32 [q, rows, cols] in {-1, +1}."""
        q, (rows, cols) = self.spec.bits, self.spec.shape
        bits = bitpack.unpack(self.planes.reshape(-1), 1, q * rows * cols).view(q, rows, cols)
        return bits.to(torch.float32) * 2 - 1

    def negative(self) -> torch.Tensor:
        """Sign bits as bool [q, rb, cb, terms]."""
        shape = (*self.spec.scale_shape, self.spec.terms)
        n = self.spec.n_scales * self.spec.terms
        return bitpack.unpack(self.signs, 1, n).view(shape).bool()

    def term_values(self) -> torch.Tensor:
        """float32 [q, rb, cb, terms]: each term (-1)^s * 2^e, computed with ldexp (exact)."""
        sign = 1.0 - 2.0 * self.negative().to(torch.float32)
        return torch.ldexp(sign, self.exponents.to(torch.int32))

    def scales(self) -> torch.Tensor:
        """alpha as float32 [q, rb, cb]."""
        return self.term_values().sum(-1)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.dequantize_rows(0, self.spec.shape[0], dtype)

    def dequantize_rows(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``start:stop`` of the dequantized weight, [stop - start, cols]."""
        s = self.spec
        q, cols, n = s.bits, s.shape[1], stop - start
        planes = self.planes[:, start:stop].reshape(-1)
        codes = bitpack.unpack(planes, 1, q * n * cols).view(q, n, cols).to(torch.float32) * 2 - 1
        blocks = torch.arange(start, stop, device=self.planes.device) // s.row_group
        alpha = self.scales()[:, blocks].repeat_interleave(s.col_group, 2)
        return (alpha * codes).sum(0).to(dtype)
