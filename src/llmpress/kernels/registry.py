"""Which matmul runs for a compressed weight: one table keyed by (format, device, regime).

Regimes: ``"gemv"`` (a few tokens per call: decoding), ``"gemm"`` (many: prefill, scoring) and
``"rows"`` (an embedding look-up). Each key lists kernels in order of preference; the first that
accepts the weight runs, and the portable torch kernels under device ``"any"`` accept everything,
so every weight on every device has a kernel. A new format or backend is one :func:`register` call.

A kernel is ``run(input, fmt, state)``: input x [T, in] float32 (``gemv``/``gemm``) or ids int64 [n]
(``rows``); ``state`` is a dict the calling module keeps for it (e.g. a C view of its buffers) and
clears whenever its buffers change.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from llmpress.errors import ConfigError
from llmpress.kernels import native, packed, tiled
from llmpress.kernels.regimes import GEMM_FROM_TOKENS, REGIMES, regime

__all__ = ["GEMM_FROM_TOKENS", "REGIMES", "REGISTRY", "Kernel", "regime", "register", "select"]


def _always(fmt) -> bool:
    return True


@dataclass(frozen=True)
class Kernel:
    name: str
    run: Callable[[torch.Tensor, Any, dict], torch.Tensor]
    accepts: Callable[[Any], bool] = _always


REGISTRY: dict[tuple[str, str, str], list[Kernel]] = {}


def register(fmt: str, device: str, regime: str, kernel: Kernel) -> None:
    if regime not in REGIMES:
        raise ConfigError(f"kernel regime must be one of {REGIMES}, got {regime!r}")
    REGISTRY.setdefault((fmt, device, regime), []).append(kernel)


def select(fmt, device: str, regime: str) -> Kernel:
    for key in ((fmt.FORMAT, device, regime), (fmt.FORMAT, "any", regime), ("any", "any", regime)):
        for kernel in REGISTRY.get(key, ()):
            if kernel.accepts(fmt):
                return kernel
    raise ConfigError(f"no {regime} kernel for the {fmt.FORMAT} format on {device}")


# --- native CPU kernels ---

def _packed_ok(fmt) -> bool:
    return packed.supports(fmt) and packed.available()


def _view(fmt, state: dict):
    view = state.get("view")
    if view is None:
        view = state["view"] = packed.describe(fmt)
    return view


for _fmt in ("palette", "uniform"):
    register(_fmt, "cpu", "gemv", Kernel("native-registers", lambda x, f, s: packed.gemv(x, f, _view(f, s)), _packed_ok))
    register(_fmt, "cpu", "gemm", Kernel("native-tiles", lambda x, f, s: packed.gemm(x, f, _view(f, s)), _packed_ok))
    register(_fmt, "cpu", "rows", Kernel("native-rows", lambda i, f, s: packed.rows(f, i, _view(f, s)), _packed_ok))


def _bcq_ok(fmt) -> bool:
    cg = fmt.spec.col_group
    return (cg % 8 == 0 or 8 % cg == 0) and fmt.planes.device.type == "cpu" and native.available()


def _bcq_scales(fmt, state: dict) -> torch.Tensor:
    s = state.get("scales")
    if s is None:
        s = state["scales"] = fmt.scales().to(torch.float32).contiguous()
    return s


register("bcq", "cpu", "gemv", Kernel("native-lut",
                                      lambda x, f, s: native.bcq_lut_matmul_native(x, f, _bcq_scales(f, s)), _bcq_ok))
register("bcq", "cpu", "gemm", Kernel("native-decoded", lambda x, f, s: native.bcq_matmul_native(x, f), _bcq_ok))

# --- Triton kernels (GPUs; the tests run them on a CPU under TRITON_INTERPRET=1) ---

@functools.lru_cache(maxsize=1)
def _triton():
    """:mod:`.triton_packed`, imported on first use (it imports triton); None where that fails."""
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        return importlib.import_module("llmpress.kernels.triton_packed")
    except Exception as e:  # a broken triton install must not break the portable kernels
        warnings.warn(f"Triton kernels unavailable ({type(e).__name__}: {e}); using the torch kernels", stacklevel=2)
        return None


def _triton_ok(fmt) -> bool:
    return _triton() is not None and _triton().supports(fmt)


for _fmt in ("palette", "uniform", "bcq"):
    register(_fmt, "cuda", "gemv", Kernel("triton-registers", lambda x, f, s: _triton().matmul(x, f, s), _triton_ok))
    register(_fmt, "cuda", "gemm", Kernel("triton-tiles", lambda x, f, s: _triton().matmul(x, f, s), _triton_ok))
    register(_fmt, "cuda", "rows", Kernel("triton-rows", lambda i, f, s: _triton().rows(f, i, s), _triton_ok))

# --- portable torch kernels, any format, any device ---
register("any", "any", "gemv", Kernel("torch-tiles", lambda x, f, s: tiled.matmul(x, f)))
register("any", "any", "gemm", Kernel("torch-tiles", lambda x, f, s: tiled.matmul(x, f)))
register("any", "any", "rows", Kernel("torch-rows", lambda i, f, s: tiled.rows(f, i)))
