"""A Linear layer whose weight lives in a compressed format."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmpress.formats import FORMATS


class CompressedLinear(nn.Module):
    """y = x @ W^T + b with W = ``format.dequantize()``.

    The format's tensors are buffers (they move with ``.to()`` and appear in ``state_dict``).
    For inference the dense weight is rebuilt once per dtype/device and cached; the cache is
    dropped whenever the buffers may change (load_state_dict, ``.to()``).
    x: [..., in_features] -> y: [..., out_features].
    """

    def __init__(self, fmt, bias: torch.Tensor | None = None):
        super().__init__()
        self.format_cls = type(fmt)
        self.spec = fmt.spec
        self.out_features, self.in_features = fmt.spec.shape
        self._tensor_names = tuple(fmt.tensors())
        for name, t in fmt.tensors().items():
            self.register_buffer(name, t)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self._dense: torch.Tensor | None = None

    @classmethod
    def from_meta(cls, meta: dict) -> "CompressedLinear":
        """An empty, correctly shaped module, to be filled by ``load_state_dict``."""
        fmt = FORMATS[meta["format"]].from_meta(meta)
        bias = torch.zeros(fmt.spec.shape[0]) if meta.get("bias") else None
        return cls(fmt, bias)

    def packed(self):
        """The format object backed by this module's current buffers."""
        return self.format_cls(self.spec, **{n: getattr(self, n) for n in self._tensor_names})

    def meta(self) -> dict:
        return {**self.packed().meta(), "module": type(self).__name__, "bias": self.bias is not None}

    @property
    def nbytes(self) -> int:
        return self.packed().nbytes

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.packed().dequantize(dtype)

    def _weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        d = self._dense
        if d is None or d.dtype != dtype or d.device != device:
            d = self.dequantize(torch.float32).to(device=device, dtype=dtype)
            self._dense = d
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._weight(x.dtype, x.device), self.bias)

    def _apply(self, fn, *args, **kwargs):
        self._dense = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._dense = None
        return super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        m = self.packed().meta()
        details = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("shape",))
        return f"in_features={self.in_features}, out_features={self.out_features}, {details}"
