"""BitDelta's format (Liu et al. 2024): the sign of every delta entry and one scale per matrix.

delta ~= scale * sign, scale = mean |delta| (the least-squares scale for a sign matrix).
Stored: ``signs`` bit-packed (1 = positive, 1 bit per entry) and ``scale`` float32 [1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack


@dataclass(frozen=True)
class SignDeltaSpec:
    shape: tuple[int, int]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"a delta needs a non-empty 2-D shape, got {self.shape}")

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class SignDeltaTensor:
    spec: SignDeltaSpec
    signs: torch.Tensor
    scale: torch.Tensor

    FORMAT = "sign_delta"

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"signs": self.signs, "scale": self.scale}

    def meta(self) -> dict:
        return {"format": self.FORMAT, "shape": list(self.spec.shape)}

    @classmethod
    def from_meta(cls, meta: dict) -> "SignDeltaTensor":
        spec = SignDeltaSpec(tuple(meta["shape"]))
        return cls(spec, torch.zeros(bitpack.packed_nbytes(spec.numel, 1), dtype=torch.uint8),
                   torch.zeros(1, dtype=torch.float32))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        bits = bitpack.unpack(self.signs, 1, self.spec.numel).view(self.spec.shape).to(torch.float32)
        return ((2 * bits - 1) * self.scale.to(torch.float32)).to(dtype)


def quantize(delta: torch.Tensor, scale: float | None = None) -> SignDeltaTensor:
    d = delta.detach().to(torch.float32)
    if d.dim() != 2:
        raise ConfigError(f"BitDelta needs a 2-D delta, got shape {tuple(d.shape)}")
    s = float(d.abs().mean()) if scale is None else scale
    return SignDeltaTensor(SignDeltaSpec(tuple(d.shape)), bitpack.pack((d >= 0).to(torch.uint8), 1),
                           torch.tensor([s], dtype=torch.float32, device=d.device))
