"""Base of the modules whose weight lives in a compressed format."""

from __future__ import annotations

import abc

import torch
from torch import nn

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS
from llmpress.kernels import registry, tiled


class FormatModule(nn.Module, abc.ABC):
    """Holds a format's tensors as buffers (they move with ``.to()`` and appear in ``state_dict``).

    ``kernel="auto"`` (the default) runs every product from the packed buffers through the
    kernel :mod:`llmpress.kernels.registry` picks for the format, device and number of tokens: no
    dense weight is ever kept. ``kernel="dense"`` is the explicit choice for training and
    debugging: the dense weight is rebuilt once per dtype/device and cached (32 bits per weight).
    Both caches are dropped whenever the buffers may change (load_state_dict, ``.to()``,
    reassignment).
    """

    KERNELS: tuple[str, ...] = ("auto", "dense")

    def _hold(self, fmt) -> None:
        self.format_cls = type(fmt)
        self.spec = fmt.spec
        self._tensor_names = tuple(fmt.tensors())
        for name, t in fmt.tensors().items():
            self.register_buffer(name, t.contiguous())  # kernels read buffers as laid out in memory
        self._dense: torch.Tensor | None = None
        self._kernel_state: dict = {}
        self.kernel = "auto"

    @property
    def kernel(self) -> str:
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        if value not in self.KERNELS:
            raise ConfigError(f"{type(self).__name__} kernel must be one of {self.KERNELS}, got {value!r}")
        self._kernel = value
        self._forget()

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

    @property
    def resident_bytes(self) -> int:
        """Bytes this module holds now: its buffers plus whatever its kernels or the dense path cached."""
        held = [getattr(self, n) for n in self._tensor_names]
        held += [v for v in self._kernel_state.values() if isinstance(v, torch.Tensor)]
        if self._dense is not None:
            held.append(self._dense)
        return sum(t.numel() * t.element_size() for t in held)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.packed().dequantize(dtype)

    def _weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        d = self._dense
        if d is None or d.dtype != dtype or d.device != device:
            d = self.dequantize(torch.float32).to(device=device, dtype=dtype)
            self._dense = d
        return d

    def _format(self):
        """The format object over the current buffers, built once per state (calls are per token)."""
        fmt = self._kernel_state.get("format")
        if fmt is None:
            fmt = self._kernel_state["format"] = self.packed()
        return fmt

    def select_kernel(self, device: torch.device | str, regime: str) -> registry.Kernel:
        """The registry's kernel for this weight on ``device`` in ``regime`` (chosen once, then kept)."""
        device = device if isinstance(device, str) else device.type
        k = self._kernel_state.get((device, regime))
        if k is None:
            k = self._kernel_state[(device, regime)] = registry.select(self._format(), device, regime)
        return k

    def run_kernel(self, inputs: torch.Tensor, regime: str) -> torch.Tensor:
        kernel = self.select_kernel(inputs.device.type, regime)
        fmt, state = self._kernel_state["format"], self._kernel_state
        if regime != "rows" and inputs.requires_grad and torch.is_grad_enabled():
            return tiled.PackedMatmul.apply(inputs, lambda x: kernel.run(x, fmt, state), fmt)
        return kernel.run(inputs, fmt, state)

    @abc.abstractmethod
    def kernel_names(self, device: torch.device | str = "cpu") -> dict[str, str]:
        """What runs for this layer on ``device``, per regime (``"dense"`` when the dense path is chosen)."""

    def _forget(self) -> None:
        self._dense = None
        self._kernel_state = {}

    def _apply(self, fn, *args, **kwargs):
        # A format's tensors are its storage, not compute: ``model.to(dtype)`` / ``.half()`` move
        # them but keep their dtypes (a float16 table cast to float32 would double its bytes and
        # lose the native kernels; one cast to bfloat16 would change the weights).
        self._forget()
        dtypes = {n: getattr(self, n).dtype for n in self._tensor_names}
        out = super()._apply(fn, *args, **kwargs)
        for n, dtype in dtypes.items():
            t = getattr(self, n)
            if t.dtype != dtype:
                self._buffers[n] = t.to(dtype)
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        self._forget()
        return super()._load_from_state_dict(*args, **kwargs)

    def __setattr__(self, name, value):
        if name in getattr(self, "_tensor_names", ()):
            self._forget()
        super().__setattr__(name, value)
