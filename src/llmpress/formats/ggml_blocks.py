"""Weights stored as llama.cpp's own quantization blocks (k-quants, IQ4_NL, Q4_0/Q5_0), byte for byte.

The other formats are llmpress's; this one is ggml's (block layouts of ``ggml-common.h``), so a
model whose GPTQ grid *is* a llama.cpp block type goes to GGUF by copying bytes and llama.cpp
decodes exactly the weights llmpress ran. Each row of a weight [rows, cols] is cut into blocks
along its columns; ``q`` is a weight's code, ``sc``/``m`` a sub-block's integer scale/min and
``d``/``dmin`` its block's float16 super-scales:

- ``Q2_K``: blocks of 256, w = d*sc*q - dmin*m, q in 0..3, 4-bit sc and m per 16 weights; 84 bytes.
- ``Q3_K``: blocks of 256, w = d*sc*q, q in -4..3, 6-bit signed sc per 16 weights; 110 bytes.
- ``Q4_K``: blocks of 256, w = d*sc*q - dmin*m, q in 0..15, 6-bit sc and m per 32 weights; 144 bytes.
- ``IQ4_NL``: blocks of 32, w = d*T[q], T ggml's 16 fixed non-uniform levels; 18 bytes.
- ``Q4_0`` / ``Q5_0``: blocks of 32, w = d*q, q in -8..7 / -16..15; 18 / 22 bytes. llama.cpp
  writes them for k-quant tensors whose rows are not a multiple of 256 wide, and so does llmpress.

Decoding multiplies in float32 in ggml's order, d*sc first; every
product is exact in float32 (at most 11 + 6 + 7 significant bits), so the only rounding is the one
subtraction of the min, the same in llama.cpp, gguf-py and here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError

# IQ4_NL's levels (ggml's kvalues_iq4nl): a fixed non-uniform grid, denser near zero.
IQ4_NL_LEVELS = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


@dataclass(frozen=True)
class BlockType:
    """One ggml block type: ``block`` weights per block, ``sub`` per sub-scale; ``levels[q]`` is the
    value of code q; sub-scales lie in ``sc_range`` ((1, 1): none); ``has_min``: a dmin and mins."""

    name: str
    block: int
    sub: int
    levels: tuple[int, ...]
    sc_range: tuple[int, int]
    has_min: bool
    nbytes: int
    bits: int  # code bits (what a user asks for: --bits)

    @property
    def n_sub(self) -> int:
        return self.block // self.sub

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.block


TYPES = {t.name: t for t in (
    BlockType("Q2_K", 256, 16, tuple(range(4)), (0, 15), True, 84, 2),
    BlockType("Q3_K", 256, 16, tuple(range(-4, 4)), (-32, 31), False, 110, 3),
    BlockType("Q4_K", 256, 32, tuple(range(16)), (0, 63), True, 144, 4),
    BlockType("IQ4_NL", 32, 32, IQ4_NL_LEVELS, (1, 1), False, 18, 4),
    BlockType("Q4_0", 32, 32, tuple(range(-8, 8)), (1, 1), False, 18, 4),
    BlockType("Q5_0", 32, 32, tuple(range(-16, 16)), (1, 1), False, 22, 5),
)}


def block_type(name: str) -> BlockType:
    try:
        return TYPES[name]
    except KeyError:
        raise ConfigError(f"unknown ggml block type {name!r}; available: {sorted(TYPES)}") from None


@dataclass(frozen=True)
class GGMLSpec:
    shape: tuple[int, int]
    qtype: str

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigError(f"ggml blocks need a non-empty 2-D shape, got {self.shape}")
        t = block_type(self.qtype)
        if self.shape[1] % t.block:
            raise ConfigError(f"{self.qtype} blocks hold {t.block} weights of one row: a width of "
                              f"{self.shape[1]} is not a multiple")

    @property
    def type(self) -> BlockType:
        return TYPES[self.qtype]

    @property
    def n_blocks(self) -> int:
        """Blocks per row."""
        return self.shape[1] // self.type.block

    @property
    def row_bytes(self) -> int:
        return self.n_blocks * self.type.nbytes


def sub_block_grid(d: torch.Tensor, sc: torch.Tensor, dmin: torch.Tensor, m: torch.Tensor):
    """(step, off) float32 [..., n_sub] of the sub-blocks, multiplied as ggml does: a weight of code q
    is step * levels[q] - off. d, dmin [...]; sc, m [..., n_sub]."""
    step = d.to(torch.float32)[..., None] * sc.to(torch.float32)
    off = dmin.to(torch.float32)[..., None] * m.to(torch.float32)
    return step, off


@dataclass
class BlockFields:
    """The integer fields of ``n`` blocks, decoded from (or to be encoded into) their bytes.

    codes uint8 [n, block] (index into the type's levels), sc int16 [n, n_sub] (as in the formula:
    signed for Q3_K; ones for IQ4_NL), m int16 [n, n_sub] (zeros without a min), d and dmin
    float16 [n] (dmin zeros without a min)."""

    codes: torch.Tensor
    d: torch.Tensor
    sc: torch.Tensor
    dmin: torch.Tensor
    m: torch.Tensor

    def values(self, t: BlockType) -> torch.Tensor:
        """The weights float32 [n, block], multiplied in ggml's order."""
        n = self.codes.shape[0]
        levels = torch.tensor(t.levels, dtype=torch.float32, device=self.codes.device)
        step, off = sub_block_grid(self.d, self.sc, self.dmin, self.m)
        per_weight = lambda a: a.repeat_interleave(t.sub, dim=1)  # noqa: E731
        return (per_weight(step) * levels[self.codes.long()] - per_weight(off)).view(n, t.block)


def _interleave(values: torch.Tensor, lanes: int, bits: int) -> torch.Tensor:
    """values [n, k] (each < 2**bits) -> bytes [n, k * bits / 8]: value (c, s, l) of the view
    [n, chunks, 8 / bits, lanes] goes to bits s*bits.. of byte (c, l) - ggml's packing of codes."""
    per = 8 // bits
    v = values.to(torch.int32).view(values.shape[0], -1, per, lanes)
    shifts = (torch.arange(per, device=values.device, dtype=torch.int32) * bits).view(1, 1, per, 1)
    return (v << shifts).sum(dim=2).to(torch.uint8).view(values.shape[0], -1)  # disjoint bits: sum = or


def _deinterleave(packed: torch.Tensor, lanes: int, bits: int) -> torch.Tensor:
    """The inverse of :func:`_interleave`: bytes [n, b] -> values int32 [n, b * 8 / bits]."""
    per = 8 // bits
    p = packed.to(torch.int32).view(packed.shape[0], -1, 1, lanes)
    shifts = (torch.arange(per, device=packed.device, dtype=torch.int32) * bits).view(1, 1, per, 1)
    return ((p >> shifts) & ((1 << bits) - 1)).view(packed.shape[0], -1)


def _f16_bytes(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).contiguous().view(torch.uint8).view(-1, 2)


def _f16(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.float16).view(-1)


# --- per-type block layouts: fields <-> bytes [n, nbytes] ---

def _q4_k_scales(sc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """8 six-bit scales and mins -> 12 bytes: bytes 0-3 / 4-7 hold sc / m 0-3 and, in their top two
    bits, the top two bits of sc / m 4-7; bytes 8-11 the low nibbles of sc 4-7 and (high) m 4-7."""
    sc, m = sc.to(torch.int32), m.to(torch.int32)
    low = torch.cat([sc[:, :4] | ((sc[:, 4:] >> 4) << 6), m[:, :4] | ((m[:, 4:] >> 4) << 6)], dim=1)
    return torch.cat([low, (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)], dim=1).to(torch.uint8)


def _q4_k_unscales(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = b.to(torch.int32)
    lo_sc, lo_m, mixed = b[:, 0:4], b[:, 4:8], b[:, 8:12]
    sc = torch.cat([lo_sc & 63, (mixed & 15) | ((lo_sc >> 6) << 4)], dim=1)
    m = torch.cat([lo_m & 63, (mixed >> 4) | ((lo_m >> 6) << 4)], dim=1)
    return sc, m


def _encode_q2_k(f: BlockFields) -> torch.Tensor:
    scales = (f.sc.to(torch.int32) | (f.m.to(torch.int32) << 4)).to(torch.uint8)
    return torch.cat([scales, _interleave(f.codes, 32, 2), _f16_bytes(f.d), _f16_bytes(f.dmin)], dim=1)


def _decode_q2_k(b: torch.Tensor) -> BlockFields:
    scales = b[:, :16].to(torch.int16)
    return BlockFields(_deinterleave(b[:, 16:80], 32, 2).to(torch.uint8), _f16(b[:, 80:82]), scales & 15,
                       _f16(b[:, 82:84]), scales >> 4)


def _encode_q3_k(f: BlockFields) -> torch.Tensor:
    # codes c = q + 4: bits 0-1 in qs, bit 2 in hmask (ggml's "subtract 4 unless the mask bit is set").
    c = f.codes.to(torch.int32)
    s = f.sc.to(torch.int32) + 32
    scales = torch.cat([_interleave(s & 15, 8, 4), _interleave(s >> 4, 4, 2)], dim=1)
    return torch.cat([_interleave(c >> 2, 32, 1), _interleave(c & 3, 32, 2), scales, _f16_bytes(f.d)], dim=1)


def _decode_q3_k(b: torch.Tensor) -> BlockFields:
    codes = _deinterleave(b[:, 32:96], 32, 2) | (_deinterleave(b[:, :32], 32, 1) << 2)
    sc = (_deinterleave(b[:, 96:104], 8, 4) | (_deinterleave(b[:, 104:108], 4, 2) << 4)) - 32
    zeros = torch.zeros(b.shape[0], device=b.device, dtype=torch.float16)
    return BlockFields(codes.to(torch.uint8), _f16(b[:, 108:110]), sc.to(torch.int16), zeros,
                       torch.zeros_like(sc, dtype=torch.int16))


def _encode_q4_k(f: BlockFields) -> torch.Tensor:
    return torch.cat([_f16_bytes(f.d), _f16_bytes(f.dmin), _q4_k_scales(f.sc, f.m), _interleave(f.codes, 32, 4)],
                     dim=1)


def _decode_q4_k(b: torch.Tensor) -> BlockFields:
    sc, m = _q4_k_unscales(b[:, 4:16])
    return BlockFields(_deinterleave(b[:, 16:144], 32, 4).to(torch.uint8), _f16(b[:, 0:2]), sc.to(torch.int16),
                       _f16(b[:, 2:4]), m.to(torch.int16))


def _scale_only(b: torch.Tensor, codes: torch.Tensor) -> BlockFields:
    """Fields of blocks with one float16 scale at bytes 0-1 and no sub-scales."""
    n = b.shape[0]
    ones = torch.ones(n, 1, dtype=torch.int16, device=b.device)
    return BlockFields(codes.to(torch.uint8), _f16(b[:, 0:2]), ones,
                       torch.zeros(n, dtype=torch.float16, device=b.device), torch.zeros_like(ones))


def _encode_q4_0(f: BlockFields) -> torch.Tensor:
    # Q4_0 and IQ4_NL share this layout (d, then code j in the low and j + 16 in the high nibble
    # of byte j); only their levels differ.
    return torch.cat([_f16_bytes(f.d), _interleave(f.codes, 16, 4)], dim=1)


def _decode_q4_0(b: torch.Tensor) -> BlockFields:
    return _scale_only(b, _deinterleave(b[:, 2:18], 16, 4))


def _encode_q5_0(f: BlockFields) -> torch.Tensor:
    # Bit 4 of code j is bit j of the little-endian uint32 qh; the low four bits as in Q4_0.
    c = f.codes.to(torch.int32)
    return torch.cat([_f16_bytes(f.d), _interleave(c >> 4, 1, 1), _interleave(c & 15, 16, 4)], dim=1)


def _decode_q5_0(b: torch.Tensor) -> BlockFields:
    return _scale_only(b, _deinterleave(b[:, 6:22], 16, 4) | (_deinterleave(b[:, 2:6], 1, 1) << 4))


_LAYOUTS = {"Q2_K": (_encode_q2_k, _decode_q2_k), "Q3_K": (_encode_q3_k, _decode_q3_k),
            "Q4_K": (_encode_q4_k, _decode_q4_k), "IQ4_NL": (_encode_q4_0, _decode_q4_0),
            "Q4_0": (_encode_q4_0, _decode_q4_0), "Q5_0": (_encode_q5_0, _decode_q5_0)}


def encode_blocks(qtype: str, fields: BlockFields) -> torch.Tensor:
    """Fields of n blocks -> their bytes uint8 [n, nbytes]; fields out of their type's range are refused."""
    t = block_type(qtype)
    lo, hi = t.sc_range
    if int(fields.codes.max()) >= len(t.levels) or int(fields.sc.min()) < lo or int(fields.sc.max()) > hi:
        raise ConfigError(f"{qtype}: a code or sub-scale lies outside the block type's range")
    if t.has_min and (int(fields.m.min()) < 0 or int(fields.m.max()) > hi):
        raise ConfigError(f"{qtype}: a sub-block min lies outside 0..{hi}")
    out = _LAYOUTS[qtype][0](fields)
    assert out.shape[1] == t.nbytes, (qtype, out.shape)
    return out


def decode_blocks(qtype: str, blocks: torch.Tensor) -> BlockFields:
    """Bytes uint8 [n, nbytes] -> the fields of the n blocks."""
    return _LAYOUTS[qtype][1](blocks)


@dataclass
class GGMLBlocks:
    """``blocks`` uint8 [rows, n_blocks * nbytes]: each row's blocks in ggml's byte layout, the file's bytes."""

    spec: GGMLSpec
    blocks: torch.Tensor

    FORMAT = "ggml"

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"blocks": self.blocks}

    def meta(self) -> dict:
        return {"format": self.FORMAT, "shape": list(self.spec.shape), "type": self.spec.qtype}

    @classmethod
    def empty(cls, spec: GGMLSpec) -> "GGMLBlocks":
        return cls(spec, torch.zeros(spec.shape[0], spec.row_bytes, dtype=torch.uint8))

    @classmethod
    def from_meta(cls, meta: dict) -> "GGMLBlocks":
        return cls.empty(GGMLSpec(tuple(meta["shape"]), str(meta["type"])))

    @classmethod
    def from_fields(cls, spec: GGMLSpec, fields: BlockFields) -> "GGMLBlocks":
        """Fields of every block, row after row ([rows * n_blocks, ...])."""
        return cls(spec, encode_blocks(spec.qtype, fields).reshape(spec.shape[0], spec.row_bytes))

    @property
    def nbytes(self) -> int:
        return self.blocks.numel()

    def fields(self, start: int = 0, stop: int | None = None) -> BlockFields:
        """Fields of the blocks of rows ``start:stop``, row after row."""
        rows = self.blocks[start:stop]
        return decode_blocks(self.spec.qtype, rows.reshape(-1, self.spec.type.nbytes))

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.dequantize_rows(0, self.spec.shape[0], dtype)

    def dequantize_rows(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``start:stop`` of the weight, [stop - start, cols], decoding only their blocks."""
        values = self.fields(start, stop).values(self.spec.type)
        return values.view(stop - start, self.spec.shape[1]).to(dtype)
