"""Uniform k-bit codes for the kept delta values, and DeltaDQ's separate quantization of them.

Uniform codes: value v -> code c = clamp(round((v - lo) / step), 0, 2^k - 1), v ~= lo + c * step,
with one (lo, step) pair per matrix. ``lo = -clip`` and ``step = 2 clip / (2^k - 1)``, where the
clip minimises the squared error: fine-tuning deltas are heavy-tailed, so at 1-2 bits the best
clip is a small multiple of their RMS and far below max|v| (at 1 bit it is mean|v|; a clip at a
fifth of max|v| had 40x the error on Student-t values). See :func:`uniform_grid`.

Separate quantization (Jiang et al. 2024, DeltaDQ): the k-bit codes are split into m = 2^s parts
by their top s bits; each part stores only the low k - s bits of its members, and which part an
entry belongs to supplies the top bits: c = (part << (k - s)) | low. Here the entry positions
come from a seed, so membership is stored explicitly as an s-bit part id per entry (packed);
the split is therefore exact and costs the same k bits per entry as the plain codes. It saves
bits only where positions are stored anyway (then the part is the list an index sits in).
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack

# Clip candidates as multiples of the values' RMS: 0.25 to 64 in steps of 2^(1/3), wide enough for
# 1-bit codes (best near 0.6-0.8 RMS) and 8-bit codes of heavy-tailed values (best near max|v|).
CLIP_LADDER = tuple(0.25 * 2 ** (i / 3) for i in range(25))
REFINE_STEPS = 3


def check_bits(bits: int, parts_bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"delta value bits must be an integer in 1..8, got {bits!r}")
    if not isinstance(parts_bits, int) or not 0 <= parts_bits <= bits:
        raise ConfigError(f"separate quantization splits {bits}-bit codes by 0..{bits} top bits, got {parts_bits!r}")


def _codes(v: torch.Tensor, levels: int, clip: float) -> torch.Tensor:
    """Float codes 0..levels of ``v`` on the symmetric grid with this clip (what :func:`encode` gives)."""
    return torch.clamp(torch.round((v + clip) / (2 * clip / levels)), 0, levels)


def _sq_error(v: torch.Tensor, levels: int, clip: float) -> float:
    return float(((_codes(v, levels, clip) * (2 * clip / levels) - clip - v) ** 2).sum())


def uniform_grid(values: torch.Tensor, bits: int) -> tuple[float, float]:
    """(lo, step) of the symmetric k-bit grid with the least squared error on ``values``.

    The best ladder clip (or max|v|) is refined by alternating code assignment with the least
    squares step for those codes (Lloyd's iteration restricted to symmetric uniform grids), kept
    only while the error falls.
    """
    v = values.to(torch.float32).reshape(-1)
    amax = float(v.abs().max()) if v.numel() else 0.0
    if amax == 0.0:
        return 0.0, 1.0
    levels = (1 << bits) - 1
    rms = float(v.pow(2).mean().sqrt())
    candidates = [c for c in (rms * m for m in CLIP_LADDER) if c < amax] + [amax]
    err, clip = min((_sq_error(v, levels, c), c) for c in candidates)
    for _ in range(REFINE_STEPS):
        u = _codes(v, levels, clip) - levels / 2  # centred codes
        denom = float(u.pow(2).sum())
        if denom == 0.0:
            break
        new_clip = float((v * u).sum()) / denom * levels / 2
        new_err = _sq_error(v, levels, new_clip) if new_clip > 0 else float("inf")
        if new_err >= err:
            break
        err, clip = new_err, new_clip
    return -clip, 2 * clip / levels


def unbiased_grid(values: torch.Tensor, codes: torch.Tensor, lo: float, step: float) -> tuple[float, float]:
    """The grid (lo, step) stretched so that the decoded ``codes`` keep the whole projection on
    ``values``: <Q(v), v> = <v, v>.

    A least-squares grid has <Q(v), v> = ||Q(v)||^2 = (1 - r) ||v||^2, r its relative squared
    error: it shrinks what it codes (by 36% for signs of Gaussian values), and a delta shrunk in
    every layer moves the whole model back toward its base. Stretching by 1 / (1 - r) removes the
    shrinkage at the price of a relative error r / (1 - r) instead of r.
    """
    v = values.to(torch.float32).reshape(-1)
    overlap = float((decode(codes, lo, step).reshape(-1) * v).sum())
    if overlap <= 0:
        return lo, step
    f = float(v.pow(2).sum()) / overlap
    return lo * f, step * f


def encode(values: torch.Tensor, bits: int, lo: float, step: float) -> torch.Tensor:
    """Codes (int64, same shape) of ``values`` on the grid (lo, step)."""
    return torch.clamp(torch.round((values.to(torch.float32) - lo) / step), 0, (1 << bits) - 1).to(torch.int64)


def decode(codes: torch.Tensor, lo: float, step: float) -> torch.Tensor:
    return lo + codes.to(torch.float32) * step


def split(codes: torch.Tensor, bits: int, parts_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(part id = top ``parts_bits`` bits, low ``bits - parts_bits`` bits) of each code."""
    check_bits(bits, parts_bits)
    low_bits = bits - parts_bits
    return codes >> low_bits, codes & ((1 << low_bits) - 1)


def merge(part: torch.Tensor, low: torch.Tensor, bits: int, parts_bits: int) -> torch.Tensor:
    check_bits(bits, parts_bits)
    return (part.to(torch.int64) << (bits - parts_bits)) | low.to(torch.int64)


def pack_split(codes: torch.Tensor, bits: int, parts_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed (membership, low) streams of flat ``codes``; an empty stream where its width is 0."""
    part, low = split(codes.reshape(-1), bits, parts_bits)
    empty = torch.zeros(0, dtype=torch.uint8, device=codes.device)
    return (bitpack.pack(part, parts_bits) if parts_bits else empty,
            bitpack.pack(low, bits - parts_bits) if bits > parts_bits else empty)


def unpack_split(membership: torch.Tensor, low: torch.Tensor, n: int, bits: int, parts_bits: int) -> torch.Tensor:
    """Flat int64 codes from the packed streams (inverse of :func:`pack_split`)."""
    zeros = torch.zeros(n, dtype=torch.int64, device=(membership if parts_bits else low).device)
    part = bitpack.unpack(membership, parts_bits, n) if parts_bits else zeros
    rest = bitpack.unpack(low, bits - parts_bits, n) if bits > parts_bits else zeros
    return merge(part, rest, bits, parts_bits)
