"""The look-up-table product of :mod:`.lut_matmul` as native code, run from the packed bit-planes.

:func:`bcq_matmul_native` is what ``ShiftAddLinear(kernel="native")`` calls: look-up tables for
a few tokens (decoding), a weight decoded for the one call for many (prefill).

``lut_native.c`` is compiled once per machine with the system C compiler (``$CC``, default
``cc``; ``-O3 -march=native -fopenmp``) into ``$LLMPRESS_CACHE/kernels/`` and loaded with ctypes,
so no build step or extra package is needed at install time. The weight stays packed: a layer
holds q bits per weight plus its scales, never a dense copy, which is what makes a ShiftAdd model
small in memory as well as on disk.

Numerically it is the same computation as :func:`.lut_matmul.bcq_lut_matmul` in another order
of float additions, and it applies each scale as one float product by the scale's exact value
(a sum of signed powers of two): on a CPU that is the fastest way to do those shifts and adds.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from llmpress.cache import cache_dir
from llmpress.errors import ConfigError, LlmpressError
from llmpress.formats.bcq import BCQTensor

SOURCE = Path(__file__).with_name("lut_native.c")
# From this many tokens per call (prefill, scoring) one dense product on a weight decoded for the
# call beats a table per token: table reads grow with the tokens, the decoding does not.
DENSE_FROM_TOKENS = 16
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")


class KernelUnavailable(LlmpressError):
    """The native kernel could not be built here (no C compiler, or it failed)."""


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise KernelUnavailable(f"the native LUT kernel needs a C compiler and {cc!r} was not found; install gcc "
                                "(e.g. apt-get install gcc) or set CC, or use ShiftAddLinear kernel='dense'")
    return cc


def _cpu_key() -> str:
    """What -march=native depends on: a library built on one CPU may not run on another."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """Build (once per source, compiler and CPU) and load the kernel library."""
    cc = _compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, *FLAGS, _cpu_key()]).encode()).hexdigest()[:16]
    target = cache_dir("kernels") / f"lut_native-{key}.so"
    if not target.is_file():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True)
            if done.returncode:
                raise KernelUnavailable(f"building the native LUT kernel failed ({cc}):\n{done.stderr.strip()}")
            os.replace(out, target)  # atomic: a concurrent build of the same key writes the same bytes
    lib = ctypes.CDLL(str(target))
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    for name in ("lut_matmul_blocks", "lut_matmul_columns"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    lib.bcq_dequantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                   ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.bcq_dequantize.restype = ctypes.c_int
    return lib


def available() -> bool:
    try:
        library()
        return True
    except KernelUnavailable:
        return False


def bcq_dequantize_native(weight: BCQTensor, threads: int | None = None) -> torch.Tensor:
    """``weight.dequantize()`` [rows, cols] float32, decoded by the native library (CPU)."""
    spec = weight.spec
    rows, cols = spec.shape
    planes = weight.planes.contiguous()
    scales = weight.scales().to(torch.float32).contiguous()
    w = torch.empty(rows, cols, dtype=torch.float32)
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
    y = torch.empty(x.shape[0], rows, dtype=torch.float32)
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
