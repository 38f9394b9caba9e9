"""A Linear layer that serves a fine-tune as the shared base layer plus a compressed delta.

y = base(x) + x @ D^T, where ``base`` is the base model's own ``nn.Linear`` (the same object, so
the same weight memory, in every fine-tune served over it) and D is the delta in a compressed
format. The delta is never made dense: a sparse delta is decoded once into a CSR matrix (float32
values, int32 indices: 8 bytes per kept entry), a sign delta (BitDelta) is decoded from its
packed bits inside each forward and dropped afterwards.
x: [..., in_features] -> y: [..., out_features].
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from llmpress.formats import FORMATS
from llmpress.formats.sign_delta import SignDeltaTensor
from llmpress.formats.sparse_delta import SparseDeltaTensor


class DeltaLinear(nn.Module):
    def __init__(self, base: nn.Linear, fmt):
        super().__init__()
        if tuple(fmt.spec.shape) != (base.out_features, base.in_features):
            raise ValueError(f"delta shape {tuple(fmt.spec.shape)} does not fit the base layer "
                             f"[{base.out_features}, {base.in_features}]")
        self.base = base
        self.format_cls = type(fmt)
        self.spec = fmt.spec
        self.in_features, self.out_features = base.in_features, base.out_features
        self._tensor_names = tuple(fmt.tensors())
        for name, t in fmt.tensors().items():
            self.register_buffer(f"delta_{name}", t)
        self._csr: torch.Tensor | None = None

    def packed(self):
        return self.format_cls(self.spec, **{n: getattr(self, f"delta_{n}") for n in self._tensor_names})

    def meta(self) -> dict:
        return {**self.packed().meta(), "module": type(self).__name__}

    @property
    def nbytes(self) -> int:
        return self.packed().nbytes

    def _sparse(self, device: torch.device) -> torch.Tensor:
        if self._csr is None or self._csr.device != device:
            fmt: SparseDeltaTensor = self.packed()
            values = fmt.kept_values()
            row, col = (t.to(values.device) for t in fmt.positions())
            counts = torch.bincount(row, minlength=self.out_features)
            crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                self._csr = torch.sparse_csr_tensor(crow, col.to(torch.int32), values,
                                                    (self.out_features, self.in_features), device=values.device).to(device)
        return self._csr

    def delta_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ D^T without a dense D kept anywhere."""
        flat = x.reshape(-1, self.in_features)
        if self.format_cls is SparseDeltaTensor:
            out = (self._sparse(x.device) @ flat.to(torch.float32).T).T
        elif self.format_cls is SignDeltaTensor:
            out = flat.to(torch.float32) @ self.packed().dequantize(torch.float32).to(x.device).T
        else:
            raise TypeError(f"DeltaLinear cannot serve format {self.format_cls.__name__}")
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.delta_forward(x)

    def _apply(self, fn, *args, **kwargs):
        self._csr = None
        return super()._apply(fn, *args, **kwargs)

    def extra_repr(self) -> str:
        m = self.packed().meta()
        return ", ".join(f"{k}={v}" for k, v in m.items() if k != "shape")

    @staticmethod
    def format_from_meta(meta: dict):
        return FORMATS[meta["format"]].from_meta(meta)
