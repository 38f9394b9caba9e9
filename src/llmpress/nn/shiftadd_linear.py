"""A Linear layer stored as binary codes with power-of-two scales (ShiftAddLLM)."""

from __future__ import annotations

import torch

from llmpress.kernels import bcq_lut_matmul
from llmpress.nn.compressed_linear import CompressedLinear

class ShiftAddLinear(CompressedLinear):
    """y = sum_i alpha_i (B_i x) + b for a :class:`~llmpress.formats.bcq.BCQTensor` weight.

    ``kernel="auto"`` (default) runs the registry's kernel: on a CPU the compiled look-up product
    (:mod:`llmpress.kernels.native`), which reads the packed planes, so the layer never holds a
    dense weight. ``kernel="lut"`` forces the multiplication-free torch reference: 8-input look-up
    tables of +-x sums indexed by the packed bit-plane bytes, scales applied as exponent shifts
    (:func:`llmpress.kernels.bcq_lut_matmul`); ``kernel="native"`` forces the compiled one;
    ``kernel="dense"`` multiplies by the dequantized weight, decoded once and kept (fp32: 32 bits
    per weight in memory). All give the same result up to float rounding (tested).
    x: [..., in_features] -> y: [..., out_features].
    """

    KERNELS = ("auto", "dense", "lut", "native")

    def __init__(self, fmt, bias: torch.Tensor | None = None, kernel: str = "auto"):
        super().__init__(fmt, bias)
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._kernel in ("dense", "auto"):
            return super().forward(x)
        flat = x.reshape(-1, self.in_features).to(torch.float32)
        if self._kernel == "native":
            from llmpress.kernels.native import bcq_matmul_native

            y = bcq_matmul_native(flat, self.packed())
        else:
            y = bcq_lut_matmul(flat, self.packed())
        y = y.reshape(*x.shape[:-1], self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(torch.float32)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self._kernel}"


def set_kernel(model: torch.nn.Module, kernel: str) -> int:
    """Switch every ShiftAddLinear of ``model`` to ``kernel``; returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, ShiftAddLinear)]
    for m in layers:
        m.kernel = kernel  # drops any decoded copy
    return len(layers)
