"""A Linear layer whose weight lives in a compressed format."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmpress.kernels import registry
from llmpress.nn.format_module import FormatModule


class CompressedLinear(FormatModule):
    """y = x @ W^T + b with W = ``format.dequantize()``. x: [..., in_features] -> y: [..., out_features].

    Computed in float32 from the packed weight by the registry's kernel (see
    :class:`~llmpress.nn.FormatModule`), returned in x's dtype.
    """

    def __init__(self, fmt, bias: torch.Tensor | None = None):
        super().__init__()
        self._hold(fmt)
        self.out_features, self.in_features = fmt.spec.shape
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None

    @classmethod
    def from_meta(cls, meta: dict) -> "CompressedLinear":
        """An empty, correctly shaped module, to be filled by ``load_state_dict``."""
        fmt = cls.format_from_meta(meta)
        bias = torch.zeros(fmt.spec.shape[0]) if meta.get("bias") else None
        return cls(fmt, bias)

    def meta(self) -> dict:
        return {**super().meta(), "bias": self.bias is not None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "dense":
            return F.linear(x, self._weight(x.dtype, x.device), self.bias)
        flat = x.reshape(-1, self.in_features).to(torch.float32)
        y = self.run_kernel(flat, registry.regime(flat.shape[0]))
        if self.bias is not None:
            y = y + self.bias.to(torch.float32)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def kernel_names(self, device: torch.device | str = "cpu") -> dict[str, str]:
        if self.kernel != "auto":
            return {"gemv": self.kernel, "gemm": self.kernel}
        return {r: self.select_kernel(device, r).name for r in ("gemv", "gemm")}

    def extra_repr(self) -> str:
        m = self.packed().meta()
        details = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("shape",))
        return f"in_features={self.in_features}, out_features={self.out_features}, {details}"
