"""Palette, uniform and binary-code weights multiplied on a GPU by Triton kernels, decoded in registers.

One kernel, specialised per format at compile time: each program owns a tile of output rows and a
tile of tokens, walks the input columns in blocks, decodes that [rows, columns] block of the weight
from the packed buffers straight into registers, and accumulates x W^T in float32. No dense weight
is ever written to memory, so a layer moves its stored bytes plus the activations - the bound that
makes batch-1 decoding fast on a GPU. The layouts are the formats' own (no re-layout at load):

- palette: ``bits``-bit indices, one stream over the rows (bitpack's LSB-first layout), a float16
  table of 2**bits entries per group of ``group_size`` rows;
- uniform: ``bits``-bit codes in the same stream layout, float16 scales [rows, groups], packed
  zeros, ragged last group;
- bcq (ShiftAddLLM): bit-planes [q, rows, cols/8] and one float32 scale per plane and block (the
  sums of signed powers of two, expanded once per layer and kept as kernel state, as on the CPU).

Decoding follows the register-decode design of the batch-1 low-bit GPU kernels (the GPTQ and
Marlin decoders decode packed codes in registers in front of the multiply-accumulate); the bit
fields are read with a two-byte window so 3-bit codes may straddle bytes.

The same code runs on a CPU under ``TRITON_INTERPRET=1``, which is how the tests check it
against the dense reference without a GPU. Import this module only where Triton is wanted: it
imports triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmpress.formats.bcq import BCQTensor
from llmpress.formats.palette import PaletteTensor
from llmpress.formats.uniform import UniformTensor

PALETTE, UNIFORM, BCQ = 0, 1, 2


def supports(fmt) -> bool:
    """Whether this kernel reads ``fmt`` as stored (scalar palette entries, float16 tables/scales)."""
    if isinstance(fmt, PaletteTensor):
        return fmt.spec.cluster_dim == 1 and fmt.lut.dtype == torch.float16
    if isinstance(fmt, UniformTensor):
        return fmt.scale.dtype == torch.float16
    return isinstance(fmt, BCQTensor)


@triton.jit
def _field(ptr, nbytes, first_bit, BITS: tl.constexpr, STRADDLES: tl.constexpr):
    """The BITS-bit value at stream bit ``first_bit`` (any shape of int64 offsets)."""
    byte = first_bit >> 3
    shift = (first_bit & 7).to(tl.int32)
    word = tl.load(ptr + byte, mask=byte < nbytes, other=0).to(tl.int32)
    if STRADDLES:  # a width that does not divide 8 can spill into the next byte
        word = word | (tl.load(ptr + byte + 1, mask=byte + 1 < nbytes, other=0).to(tl.int32) << 8)
    return (word >> shift) & ((1 << BITS) - 1)


@triton.jit
def _decode(p0, p1, p2, n0, n1, rn, rk, rows, cols, g0, g1,
            KIND: tl.constexpr, BITS: tl.constexpr, STRADDLES: tl.constexpr):
    """W[rn, rk] as float32 [BLOCK_N, BLOCK_K]; 0 outside the matrix.

    palette: p0 indices, p1 lut [G, 2**BITS], g0 rows per table.
    uniform: p0 codes, p1 scale [rows, groups], p2 zeros, g0 columns per group, g1 groups per row.
    bcq:     p0 planes [BITS, rows, cols/8], p1 alpha [BITS, rows/g0, cols/g1] float32.
    """
    r = rn.to(tl.int64)[:, None]
    c = rk.to(tl.int64)[None, :]
    inside = (r < rows) & (c < cols)
    if KIND == 0:
        idx = _field(p0, n0, (r * cols + c) * BITS, BITS, STRADDLES)
        w = tl.load(p1 + (r // g0) * (1 << BITS) + idx, mask=inside, other=0.0).to(tl.float32)
    elif KIND == 1:
        q = _field(p0, n0, (r * cols + c) * BITS, BITS, STRADDLES)
        g = c // g0
        z = _field(p2, n1, (r * g1 + g) * BITS, BITS, STRADDLES)
        s = tl.load(p1 + r * g1 + g, mask=inside, other=0.0).to(tl.float32)
        w = (q - z).to(tl.float32) * s
    else:
        w = (r + c).to(tl.float32) * 0.0  # [BLOCK_N, BLOCK_K] zeros
        row_bytes = cols // 8
        row_blocks = rows // g0
        col_blocks = cols // g1
        for i in tl.static_range(BITS):
            byte = tl.load(p0 + (i * rows + r) * row_bytes + (c >> 3), mask=inside, other=0).to(tl.int32)
            sign = (((byte >> (c & 7).to(tl.int32)) & 1) * 2 - 1).to(tl.float32)
            alpha = tl.load(p1 + (i * row_blocks + r // g0) * col_blocks + c // g1, mask=inside, other=0.0)
            w += alpha * sign
    return tl.where(inside, w, 0.0)


@triton.jit
def _packed_matmul(x_ptr, y_ptr, tokens, rows, cols, p0, p1, p2, n0, n1, g0, g1, k_chunk,
                   KIND: tl.constexpr, BITS: tl.constexpr, STRADDLES: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, USE_DOT: tl.constexpr,
                   SPLIT: tl.constexpr):
    """y[tokens, rows] = x[tokens, cols] W^T, x and y float32 and contiguous.

    Program (i, j, s) owns rows i*BLOCK_N.., tokens j*BLOCK_T.. and columns s*k_chunk..; with
    SPLIT the column chunks add into a zeroed y atomically (split-K).
    """
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rt = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    k_start = tl.program_id(2) * k_chunk
    acc = tl.zeros((BLOCK_T, BLOCK_N), tl.float32)
    for k0 in range(k_start, tl.minimum(k_start + k_chunk, cols), BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        w = _decode(p0, p1, p2, n0, n1, rn, rk, rows, cols, g0, g1, KIND, BITS, STRADDLES)
        x_mask = (rt[:, None] < tokens) & (rk[None, :] < cols)
        x = tl.load(x_ptr + rt.to(tl.int64)[:, None] * cols + rk[None, :], mask=x_mask, other=0.0)
        if USE_DOT:  # tensor cores from 16 tokens; full float32 products, as the CPU kernels give
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:  # a few tokens: a broadcast multiply-add, no tensor-core minimum tile
            acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    y_mask = (rt[:, None] < tokens) & (rn[None, :] < rows)
    y_at = y_ptr + rt.to(tl.int64)[:, None] * rows + rn[None, :]
    if SPLIT:
        tl.atomic_add(y_at, acc, mask=y_mask)
    else:
        tl.store(y_at, acc, mask=y_mask)


def _arguments(fmt, state: dict) -> tuple:
    """(kind, bits, p0, p1, p2, n0, n1, g0, g1) for ``fmt``; bcq's expanded scales are kept in ``state``."""
    s = fmt.spec
    rows, cols = s.shape
    if isinstance(fmt, PaletteTensor):
        return PALETTE, s.bits, fmt.indices, fmt.lut, fmt.lut, fmt.indices.numel(), 0, s.group_size or rows, 0
    if isinstance(fmt, UniformTensor):
        return (UNIFORM, s.bits, fmt.codes, fmt.scale.contiguous(), fmt.zeros, fmt.codes.numel(),
                fmt.zeros.numel(), s.group, s.n_groups)
    alpha = state.get("scales")
    if alpha is None:
        alpha = state["scales"] = fmt.scales().to(torch.float32).contiguous()
    return BCQ, s.bits, fmt.planes, alpha, alpha, fmt.planes.numel(), 0, s.row_group, s.col_group


def blocks(tokens: int) -> tuple[int, int, int, bool]:
    """(BLOCK_T, BLOCK_N, BLOCK_K, use_dot) for a call with ``tokens`` rows of input.

    Below 16 tokens the broadcast product keeps BLOCK_T * BLOCK_N * BLOCK_K about 8K values per
    program (registers); from 16 tokens tl.dot takes 16-64-token tiles.
    """
    if tokens >= 16:
        return min(64, triton.next_power_of_2(tokens)), 64, 32, True
    t = triton.next_power_of_2(max(tokens, 1))
    n = max(16, 32 // t)  # narrow row tiles: more programs for the GPU at batch 1
    return t, n, max(16, 8192 // (t * n)), False


def _processors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1  # the interpreter runs programs one after another: no reason to split


def column_splits(row_blocks: int, token_blocks: int, k_blocks: int, processors: int) -> int:
    """How many column chunks (split-K) give the GPU about 4 programs per multiprocessor.

    A decoder's small layers at batch 1 have few row blocks (576 rows: 36 programs of 16 rows), far
    fewer than an H100's 132 multiprocessors; splitting the columns fills the GPU at the price of
    one atomic add per output per chunk.
    """
    programs = row_blocks * token_blocks
    return max(1, min(k_blocks, (4 * processors + programs - 1) // programs))


def matmul(x: torch.Tensor, fmt, state: dict | None = None, splits: int | None = None) -> torch.Tensor:
    """x [T, in] float32 -> y [T, out] float32 = x W^T, W read packed from ``fmt``'s buffers.

    ``splits``: column chunks (split-K); None picks them for the device (:func:`column_splits`).
    """
    state = {} if state is None else state
    kind, bits, p0, p1, p2, n0, n1, g0, g1 = _arguments(fmt, state)
    rows, cols = fmt.spec.shape
    x = x.to(torch.float32).contiguous()
    tokens = x.shape[0]
    bt, bn, bk, dot = blocks(tokens)
    row_blocks, token_blocks, k_blocks = triton.cdiv(rows, bn), triton.cdiv(max(tokens, 1), bt), triton.cdiv(cols, bk)
    if splits is None:
        splits = column_splits(row_blocks, token_blocks, k_blocks, _processors(x.device))
    splits = max(1, min(splits, k_blocks))
    k_chunk = triton.cdiv(k_blocks, splits) * bk
    splits = triton.cdiv(cols, k_chunk)  # no empty chunk
    y = (torch.zeros if splits > 1 else torch.empty)(tokens, rows, dtype=torch.float32, device=x.device)
    if tokens == 0:
        return y
    _packed_matmul[(row_blocks, token_blocks, splits)](
        x, y, tokens, rows, cols, p0, p1, p2, n0, n1, g0, g1, k_chunk,
        KIND=kind, BITS=bits, STRADDLES=8 % bits != 0, BLOCK_T=bt, BLOCK_N=bn, BLOCK_K=bk, USE_DOT=dot,
        SPLIT=splits > 1)
    return y


@triton.jit
def _packed_rows(ids_ptr, out_ptr, n, rows, cols, p0, p1, p2, n0, n1, g0, g1,
                 KIND: tl.constexpr, BITS: tl.constexpr, STRADDLES: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[n, cols] = W[ids]: an embedding look-up, each looked-up row decoded in registers."""
    i = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rk = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rn = tl.load(ids_ptr + i, mask=i < n, other=rows)  # past the end: decodes as 0, never stored
    w = _decode(p0, p1, p2, n0, n1, rn, rk, rows, cols, g0, g1, KIND, BITS, STRADDLES)
    tl.store(out_ptr + i.to(tl.int64)[:, None] * cols + rk[None, :], w, mask=(i[:, None] < n) & (rk[None, :] < cols))


def rows(fmt, ids: torch.Tensor, state: dict | None = None) -> torch.Tensor:
    """ids int64 [n] -> W[ids] [n, cols] float32."""
    state = {} if state is None else state
    kind, bits, p0, p1, p2, n0, n1, g0, g1 = _arguments(fmt, state)
    n_rows, cols = fmt.spec.shape
    ids = ids.reshape(-1).to(torch.int64).contiguous()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_rows):
        raise IndexError(f"row ids must lie in [0, {n_rows})")
    out = torch.empty(ids.numel(), cols, dtype=torch.float32, device=ids.device)
    if ids.numel():
        grid = (triton.cdiv(ids.numel(), 16), triton.cdiv(cols, 128))
        _packed_rows[grid](ids, out, ids.numel(), n_rows, cols, p0, p1, p2, n0, n1, g0, g1,
                           KIND=kind, BITS=bits, STRADDLES=8 % bits != 0, BLOCK_R=16, BLOCK_K=128)
    return out
