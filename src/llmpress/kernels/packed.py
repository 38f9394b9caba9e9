"""Palette and uniform weights multiplied and looked up straight from their packed codes (CPU).

Binds ``packed_native.c`` (built once per machine by :mod:`.build`). The weight is read where it
lies: the format's own buffers, no re-layout and no dense copy, so a layer's resident memory is
its stored bytes. ``gemm`` (many tokens) decodes a tile of rows at a time into a small float32
buffer and multiplies it with torch, so prefill runs at dense matmul speed while never holding
more than one tile.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from llmpress.formats.palette import PaletteTensor
from llmpress.formats.uniform import UniformTensor
from llmpress.kernels import build

SOURCE = Path(__file__).with_name("packed_native.c")
# Bytes of float32 weight one gemm tile decodes: a transient buffer, never kept; large enough that
# the decoder's layers (at most 3.5 MB in float32 on the default model) are one product each,
# since narrow tiles make torch's matmul markedly slower on long inputs.
TILE_BYTES = 1 << 22


class _Weight(ctypes.Structure):
    _fields_ = [("rows", ctypes.c_int64), ("cols", ctypes.c_int64), ("bits", ctypes.c_int64),
                ("kind", ctypes.c_int64), ("codes", ctypes.c_void_p), ("codes_nbytes", ctypes.c_int64),
                ("lut", ctypes.c_void_p), ("row_group", ctypes.c_int64), ("scale", ctypes.c_void_p),
                ("zeros", ctypes.c_void_p), ("zeros_nbytes", ctypes.c_int64), ("col_group", ctypes.c_int64)]


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    lib = build.load(SOURCE)
    lib.packed_gemv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int,
                                ctypes.c_int]
    lib.packed_decode_rows.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                       ctypes.c_int, ctypes.c_int]
    lib.packed_fast_path.argtypes = [ctypes.c_void_p]
    for fn in (lib.packed_gemv, lib.packed_decode_rows, lib.packed_fast_path):
        fn.restype = ctypes.c_int
    return lib


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the library builds here; if not, says why once and the portable kernels run."""
    return build.builds(library)


def supports(fmt) -> bool:
    """Whether this kernel reads ``fmt`` as stored (CPU, float16 tables/scales, scalar palette entries)."""
    if isinstance(fmt, PaletteTensor):
        ok = fmt.spec.cluster_dim == 1 and fmt.lut.dtype == torch.float16 and fmt.lut.is_contiguous()
        tensors = (fmt.lut, fmt.indices)
    elif isinstance(fmt, UniformTensor):
        ok = fmt.scale.dtype == torch.float16 and fmt.scale.is_contiguous()
        tensors = (fmt.codes, fmt.scale, fmt.zeros)
    else:
        return False
    return ok and all(t.device.type == "cpu" for t in tensors)


def describe(fmt) -> _Weight:
    """The C view of ``fmt``'s buffers (valid while they live and are not replaced)."""
    rows, cols = fmt.spec.shape
    if isinstance(fmt, PaletteTensor):
        s = fmt.spec
        return _Weight(rows, cols, s.bits, 0, fmt.indices.data_ptr(), fmt.indices.numel(), fmt.lut.data_ptr(),
                       s.group_size or rows, None, None, 0, cols)
    s = fmt.spec
    return _Weight(rows, cols, s.bits, 1, fmt.codes.data_ptr(), fmt.codes.numel(), None, rows,
                   fmt.scale.data_ptr(), fmt.zeros.data_ptr(), fmt.zeros.numel(), s.group)


def path(fmt) -> str:
    """``"avx512"`` when the vector path runs for this weight, else ``"portable"``."""
    return "avx512" if library().packed_fast_path(ctypes.byref(describe(fmt))) else "portable"


def gemv(x: torch.Tensor, fmt, view: _Weight | None = None, threads: int | None = None,
         portable: bool = False) -> torch.Tensor:
    """x [T, in] float32 -> y [T, out] = x W^T; every weight decoded once per call, in registers."""
    x = x.contiguous()
    y = torch.empty(x.shape[0], fmt.spec.shape[0], dtype=torch.float32, device="cpu")
    library().packed_gemv(ctypes.byref(view or describe(fmt)), x.data_ptr(), x.shape[0], y.data_ptr(),
                          threads or torch.get_num_threads(), int(portable))
    return y


def rows(fmt, ids: torch.Tensor, view: _Weight | None = None, threads: int | None = None,
         portable: bool = False) -> torch.Tensor:
    """ids int64 [n] -> the rows of W [n, cols] float32 (an embedding look-up)."""
    ids = ids.reshape(-1).to(torch.int64).contiguous()
    out = torch.empty(ids.numel(), fmt.spec.shape[1], dtype=torch.float32, device="cpu")
    view = view or describe(fmt)
    if library().packed_decode_rows(ctypes.byref(view), ids.data_ptr(), ids.numel(), out.data_ptr(),
                                    threads or torch.get_num_threads(), int(portable)):
        raise IndexError(f"row ids must lie in [0, {fmt.spec.shape[0]})")
    return out


def gemm(x: torch.Tensor, fmt, view: _Weight | None = None, threads: int | None = None) -> torch.Tensor:
    """x [T, in] float32 -> x W^T for many tokens: W decoded one tile of rows at a time."""
    out_features, cols = fmt.spec.shape
    view = view or describe(fmt)
    tile = max(16, TILE_BYTES // (4 * cols))
    if tile >= out_features:
        return x @ rows(fmt, torch.arange(out_features, device="cpu"), view, threads).T
    # row tiles of y^T are contiguous
    yt = torch.empty(out_features, x.shape[0], dtype=torch.float32, device="cpu")
    for r0 in range(0, out_features, tile):
        ids = torch.arange(r0, min(r0 + tile, out_features), device="cpu")
        torch.mm(rows(fmt, ids, view, threads), x.T, out=yt[r0:r0 + ids.numel()])
    return yt.T
