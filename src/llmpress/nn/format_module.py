"""Base of the modules whose weight lives in a compressed format."""

from __future__ import annotations

import torch
from torch import nn

from llmpress.formats import FORMATS


class FormatModule(nn.Module):
    """Holds a format's tensors as buffers (they move with ``.to()`` and appear in ``state_dict``).

    For inference the dense weight is rebuilt once per dtype/device and cached; the cache is
    dropped whenever the buffers may change (load_state_dict, ``.to()``, reassignment).
    """

    def _hold(self, fmt) -> None:
        self.format_cls = type(fmt)
        self.spec = fmt.spec
        self._tensor_names = tuple(fmt.tensors())
        for name, t in fmt.tensors().items():
            self.register_buffer(name, t)
        self._dense: torch.Tensor | None = None

    @staticmethod
    def format_from_meta(meta: dict):
        return FORMATS[meta["format"]].from_meta(meta)

    def packed(self):
        """The format object backed by this module's current buffers."""
        return self.format_cls(self.spec, **{n: getattr(self, n) for n in self._tensor_names})

    def meta(self) -> dict:
        return {**self.packed().meta(), "module": type(self).__name__}

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

    def _apply(self, fn, *args, **kwargs):
        self._dense = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._dense = None
        return super()._load_from_state_dict(*args, **kwargs)

    def __setattr__(self, name, value):
        if name in getattr(self, "_tensor_names", ()):
            self._dense = None
        super().__setattr__(name, value)
