"""The look-up-table product of :mod:`.lut_matmul` as native code, run from the packed bit-planes.

:func:`bcq_matmul_native` is what ``ShiftAddLinear(kernel="native")`` calls: look-up tables for
a few tokens (decoding), a weight decoded for the one call for many (prefill).

``lut_native.c`` is compiled once per machine (:mod:`.build`). The weight stays packed: a layer
holds q bits per weight plus its scales, never a dense copy, which is what makes a ShiftAdd model
small in memory as well as on disk.

Numerically it is the same computation as :func:`.lut_matmul.bcq_lut_matmul` in another order
of float additions, and it applies each scale as one float product by the scale's exact value
(a sum of signed powers of two): on a CPU that is the fastest way to do those shifts and adds.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQTensor
from llmpress.kernels import build
from llmpress.kernels.build import KernelUnavailable
from llmpress.kernels.regimes import GEMM_FROM_TOKENS

__all__ = ["KernelUnavailable", "available", "bcq_dequantize_native", "bcq_lut_matmul_native", "bcq_matmul_native"]

SOURCE = Path(__file__).with_name("lut_native.c")
DENSE_FROM_TOKENS = GEMM_FROM_TOKENS  # the registry's gemm regime: one threshold for every kernel


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """Build (once per source, compiler and CPU) and load the kernel library."""
    lib = build.load(SOURCE)
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    for name in ("lut_matmul_blocks", "lut_matmul_columns"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    lib.bcq_dequantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.bcq_dequantize.restype = ctypes.c_int
    return lib


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the library builds here; if not, says why once and the portable kernels run."""
    return build.builds(library)


def bcq_dequantize_native(weight: BCQTensor, threads: int | None = None) -> torch.Tensor:
    """``weight.dequantize()`` [rows, cols] float32, decoded by the native library (CPU)."""
    spec = weight.spec
    rows, cols = spec.shape
    planes = weight.planes.contiguous()
    scales = weight.scales().to(torch.float32).contiguous()
    w = torch.empty(rows, cols, dtype=torch.float32, device="cpu")
    library().bcq_dequantize(planes.data_ptr(), scales.data_ptr(), spec.bits, rows, cols, spec.row_group,
                             spec.col_group, w.data_ptr(), threads or torch.get_num_threads())
    return w


def bcq_lut_matmul_native(x: torch.Tensor, weight: BCQTensor, scales: torch.Tensor | None = None,
                          threads: int | None = None) -> torch.Tensor:
    """x [T, in] float32 (CPU) -> y [T, out] = x W^T, W = ``weight.dequantize()``, read from the packed planes.

    ``scales``: ``weight.scales()`` [q, rb, cb] float32, when the caller keeps it (it is small);
    ``threads``: default ``torch.get_num_threads()``.
    """
    spec = weight.spec
    rows, cols = spec.shape
    if x.dim() != 2 or x.shape[1] != cols:
        raise ConfigError(f"LUT matmul takes x [tokens, {cols}], got {tuple(x.shape)}")
    cg = spec.col_group
    if cg % 8 and 8 % cg:
        raise ConfigError(f"LUT matmul needs a column group that divides 8 or is a multiple of 8, got {cg}")
    if x.device.type != "cpu" or weight.planes.device.type != "cpu":
        raise ConfigError("the native LUT kernel runs on the CPU; move the model to the CPU or use kernel='dense'")
    x = x.to(torch.float32).contiguous()
    planes = weight.planes.contiguous()
    scales = (weight.scales() if scales is None else scales).to(torch.float32).contiguous()
    y = torch.empty(x.shape[0], rows, dtype=torch.float32, device="cpu")
    fn = library().lut_matmul_blocks if cg % 8 == 0 else library().lut_matmul_columns
    failed = fn(x.data_ptr(), x.shape[0], rows, cols, spec.bits, planes.data_ptr(), scales.data_ptr(),
                spec.row_group, cg, y.data_ptr(), threads or torch.get_num_threads())
    if failed:
        raise MemoryError("the native LUT kernel could not allocate its tables")
    return y


def bcq_matmul_native(x: torch.Tensor, weight: BCQTensor, threads: int | None = None) -> torch.Tensor:
    """x [T, in] -> x W^T, holding no dense weight between calls: the look-up kernel for short
    inputs (decoding), and for ``T >= DENSE_FROM_TOKENS`` a dense product on W decoded for this
    call only (one layer's float32 weight at a time)."""
    if x.shape[0] >= DENSE_FROM_TOKENS:
        return x.to(torch.float32) @ bcq_dequantize_native(weight, threads).T
    return bcq_lut_matmul_native(x, weight, threads=threads)
