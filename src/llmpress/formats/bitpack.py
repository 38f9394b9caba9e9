"""Pack k-bit unsigned integers (1 <= k <= 8) into a dense byte stream and back.

Layout: value i occupies bits [i*k, (i+1)*k) of the stream, least significant bit first, and
stream bit j lives in byte j // 8 at bit position j % 8. A stream of n values takes exactly
ceil(n*k/8) bytes; the unused high bits of the last byte are zero.
"""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError


def packed_nbytes(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"bit width must be an integer in 1..8, got {bits!r}")


def pack(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``values`` (any shape, integers in [0, 2**bits)) into a flat uint8 tensor."""
    _check_bits(bits)
    flat = values.reshape(-1)
    n = flat.numel()
    if n and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ConfigError(f"values must lie in [0, {1 << bits}) to be packed at {bits} bits")
    if bits == 8:
        return flat.to(torch.uint8).clone()
    # Eight k-bit values make exactly k bytes: combine them into one 64-bit word, then split it.
    pad = (-n) % 8
    words = torch.nn.functional.pad(flat.to(torch.int64), (0, pad)).view(-1, 8)
    shifts = torch.arange(8, dtype=torch.int64, device=flat.device) * bits
    word = (words << shifts).sum(dim=1)  # bit-disjoint terms, so the sum is an OR
    byte_shifts = torch.arange(bits, dtype=torch.int64, device=flat.device) * 8
    out = ((word.unsqueeze(1) >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)
    return out[: packed_nbytes(n, bits)].clone()


def unpack(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack`: the first ``n`` values as a flat uint8 tensor."""
    _check_bits(bits)
    need = packed_nbytes(n, bits)
    if packed.dtype != torch.uint8 or packed.numel() < need:
        raise ConfigError(f"packed stream holds {packed.numel()} bytes, {n} values at {bits} bits need {need}")
    flat = packed.reshape(-1)[:need]
    if bits == 8:
        return flat.clone()
    groups = (n + 7) // 8
    padded = torch.nn.functional.pad(flat.to(torch.int64), (0, groups * bits - need)).view(groups, bits)
    word = (padded << (torch.arange(bits, dtype=torch.int64, device=flat.device) * 8)).sum(dim=1)
    mask = (1 << bits) - 1
    values = (word.unsqueeze(1) >> (torch.arange(8, dtype=torch.int64, device=flat.device) * bits)) & mask
    return values.reshape(-1)[:n].to(torch.uint8)


def unpack_range(packed: torch.Tensor, bits: int, start: int, n: int) -> torch.Tensor:
    """Values ``start .. start + n`` of a stream packed by :func:`pack`, as a flat uint8 tensor.

    Reads only the bytes that hold them, so a few rows of a large tensor cost what they hold.
    """
    _check_bits(bits)
    first, end = start * bits // 8, packed_nbytes(start + n, bits)
    if start < 0 or n < 0 or packed.numel() < end:
        raise ConfigError(f"values {start}..{start + n} at {bits} bits need {end} bytes, the stream has "
                          f"{packed.numel()}")
    offset = start * bits - 8 * first
    if offset == 0:
        return unpack(packed.reshape(-1)[first:end], bits, n)
    stream = unpack(packed.reshape(-1)[first:end], 1, 8 * (end - first))[offset:offset + n * bits]
    weights = 1 << torch.arange(bits, dtype=torch.int32, device=packed.device)
    return (stream.view(n, bits).to(torch.int32) * weights).sum(1).to(torch.uint8)
