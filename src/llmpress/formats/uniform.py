"""Group-wise asymmetric integer codes (the storage format of RTN and GPTQ).

A weight matrix W of shape [rows, cols] is split along its columns (input features) into groups
of ``group_size``; the last group may be shorter ("ragged") when cols is not a multiple.
Each (row, group) has a float16 ``scale`` s and an integer ``zero`` z in [0, 2**bits), and each
weight is a code q in [0, 2**bits) with  W ~= (q - z) * s.

Stored: codes and zeros bit-packed at ``bits`` bits, scales as float16. Nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack


@dataclass(frozen=True)
class UniformSpec:
    """Shape parameters of a :class:`UniformTensor`; ``group_size`` 0 means one group per row."""

    shape: tuple[int, int]
    bits: int
    group_size: int

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"uniform format needs a non-empty 2-D shape, got {self.shape}")
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"uniform bits must be in 2..8, got {self.bits}")
        if self.group_size < 0:
            raise ConfigError(f"group_size must be >= 0 (0 = whole row), got {self.group_size}")

    @property
    def group(self) -> int:
        cols = self.shape[1]
        return cols if self.group_size == 0 else min(self.group_size, cols)

    @property
    def n_groups(self) -> int:
        return math.ceil(self.shape[1] / self.group)

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class UniformTensor:
    """Packed codes (uint8 stream), ``scale`` float16 [rows, n_groups], packed zeros."""

    spec: UniformSpec
    codes: torch.Tensor
    scale: torch.Tensor
    zeros: torch.Tensor

    FORMAT = "uniform"

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"codes": self.codes, "scale": self.scale, "zeros": self.zeros}

    def meta(self) -> dict:
        return {"format": self.FORMAT, "shape": list(self.spec.shape), "bits": self.spec.bits,
                "group_size": self.spec.group_size}

    @classmethod
    def empty(cls, spec: UniformSpec) -> "UniformTensor":
        """Correctly shaped placeholders, to be filled by loading a state dict."""
        rows, g = spec.shape[0], spec.n_groups
        return cls(spec, torch.zeros(bitpack.packed_nbytes(spec.numel, spec.bits), dtype=torch.uint8),
                   torch.ones(rows, g, dtype=torch.float16),
                   torch.zeros(bitpack.packed_nbytes(rows * g, spec.bits), dtype=torch.uint8))

    @classmethod
    def from_meta(cls, meta: dict) -> "UniformTensor":
        return cls.empty(UniformSpec(tuple(meta["shape"]), int(meta["bits"]), int(meta["group_size"])))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def int_codes(self) -> torch.Tensor:
        """Codes as uint8 [rows, cols]."""
        return bitpack.unpack(self.codes, self.spec.bits, self.spec.numel).view(self.spec.shape)

    def int_zeros(self) -> torch.Tensor:
        rows, g = self.spec.shape[0], self.spec.n_groups
        return bitpack.unpack(self.zeros, self.spec.bits, rows * g).view(rows, g)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.dequantize_rows(0, self.spec.shape[0], dtype)

    def dequantize_rows(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``start:stop`` of the dequantized weight, [stop - start, cols], reading only their bytes."""
        cols, group, g = self.spec.shape[1], self.spec.group, self.spec.n_groups
        n = stop - start
        q = bitpack.unpack_range(self.codes, self.spec.bits, start * cols, n * cols).view(n, cols).to(torch.float32)
        zeros = bitpack.unpack_range(self.zeros, self.spec.bits, start * g, n * g).view(n, g)
        per_col = lambda t: t.to(torch.float32).repeat_interleave(group, dim=1)[:, :cols]  # noqa: E731
        return ((q - per_col(zeros)) * per_col(self.scale[start:stop])).to(dtype)


def _round_up_fp16(x: torch.Tensor) -> torch.Tensor:
    """float16 value >= x: keeps the grid wide enough to cover the group's range."""
    h = x.to(torch.float16)
    low = h.to(torch.float32) < x
    return torch.where(low, torch.nextafter(h, torch.full_like(h, float("inf"))), h)


def quantize(weight: torch.Tensor, bits: int, group_size: int, symmetric: bool = False) -> UniformTensor:
    """Round-to-nearest quantization of a 2-D weight.

    The range of every group is widened to include 0 (so the zero point is an integer code) and
    the scale is rounded up to float16; hence |W - dequantize(quantize(W))| <= scale / 2.
    ``symmetric``: every zero is 2**(bits-1) and the scale max|w| / (2**(bits-1) - 1), the grid of
    llama.cpp's Q8_0 and Q4_0 blocks (one level, the most negative, goes unused by the rounding).
    """
    if weight.dim() != 2:
        raise ConfigError(f"uniform quantization needs a 2-D weight, got shape {tuple(weight.shape)}")
    spec = UniformSpec(tuple(weight.shape), bits, group_size)
    w = weight.detach().to(torch.float32)
    if not torch.isfinite(w).all():
        raise ConfigError("weight contains NaN or Inf; fix the model before compressing it")
    rows, cols = spec.shape
    group, n_groups = spec.group, spec.n_groups
    pad = n_groups * group - cols
    qmax = (1 << bits) - 1
    # Ragged last group: pad with zeros, which the range must contain anyway.
    wg = torch.nn.functional.pad(w, (0, pad)).view(rows, n_groups, group)
    lo = wg.amin(dim=2).clamp(max=0)
    hi = wg.amax(dim=2).clamp(min=0)
    half = 1 << (bits - 1)
    scale = torch.maximum(-lo, hi) / (half - 1) if symmetric else (hi - lo) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    scale16 = _round_up_fp16(scale.clamp(min=float(torch.finfo(torch.float16).tiny)))
    s = scale16.to(torch.float32)
    zero = torch.full_like(s, half) if symmetric else torch.round(-lo / s).clamp(0, qmax)
    q = torch.clamp(torch.round(wg / s.unsqueeze(2)) + zero.unsqueeze(2), 0, qmax)
    q = q.view(rows, n_groups * group)[:, :cols]
    return UniformTensor(spec, bitpack.pack(q.to(torch.uint8), bits), scale16,
                         bitpack.pack(zero.to(torch.uint8), bits))
