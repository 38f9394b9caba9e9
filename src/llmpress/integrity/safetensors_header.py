"""A safetensors file's header, parsed and checked against the file's own size before any tensor
is read: every tensor's byte range must lie in the data section, have exactly the bytes its
dtype and shape need, and not overlap another; the ranges must cover the data section.

Layout (the safetensors format): 8 bytes little-endian header length N, N bytes of JSON
``{name: {"dtype": "F16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the data section, offsets relative to its start.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from llmpress.errors import CheckpointError

# safetensors dtype -> (torch dtype name, bytes per element)
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
          "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8)}
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit
MAX_DIMS = 8


@dataclass(frozen=True)
class Entry:
    """One tensor as the header describes it; ``begin``/``end`` are absolute file offsets."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class Header:
    path: Path
    entries: dict[str, Entry]
    metadata: dict[str, str]

    def table(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (torch dtype name, shape)."""
        return {n: (e.dtype, e.shape) for n, e in self.entries.items()}


def read_header(path: Path, what: str = "tensor file") -> Header:
    """The validated header of the safetensors file ``path``; reads only the header's bytes."""
    fix = "the file is truncated or corrupt; re-create it"
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} ({what}) has {size} bytes, too few for a safetensors header; {fix}")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(f"{path} ({what}) claims a {n}-byte header in a {size}-byte file; {fix}")
        raw = f.read(n)
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise CheckpointError(f"{path} ({what}) has a header that is not valid JSON; {fix}") from None
    if not isinstance(table, dict):
        raise CheckpointError(f"{path} ({what}) has a header that is not a table; {fix}")
    data_start, data_len = 8 + n, size - 8 - n
    metadata = table.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path} ({what}) has __metadata__ that is not a table of strings; {fix}")
    entries = {name: _entry(path, what, name, info, data_start, data_len) for name, info in table.items()}
    spans = sorted((e.begin, e.end, name) for name, e in entries.items())
    at = data_start
    for begin, end, name in spans:
        if begin != at:
            problem = "overlaps the tensor before it" if begin < at else "leaves a gap before it"
            raise CheckpointError(f"{path} ({what}): tensor {name!r} {problem}; {fix}")
        at = end
    if at != size:
        raise CheckpointError(f"{path} ({what}): its tensors cover {at - data_start} of the {data_len} data bytes; {fix}")
    return Header(path, entries, metadata)


def _entry(path: Path, what: str, name: str, info: object, data_start: int, data_len: int) -> Entry:
    where = f"{path} ({what}): tensor {name[:80]!r}"
    fix = "the file is corrupt; re-create it"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(f"{where} is not described by dtype, shape and data_offsets; {fix}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CheckpointError(f"{where} has dtype {str(dtype)[:20]!r}, not one llmpress reads; {fix}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_count(d) for d in shape):
        raise CheckpointError(f"{where} has shape {str(shape)[:60]}, not a list of at most {MAX_DIMS} sizes; {fix}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise CheckpointError(f"{where} has data_offsets {str(offsets)[:60]}, not two byte offsets; {fix}")
    begin, end = offsets
    torch_name, itemsize = DTYPES[dtype]
    need = math.prod(shape) * itemsize
    if not begin <= end <= data_len:
        raise CheckpointError(f"{where} spans bytes {begin}..{end}, outside the file's {data_len} data bytes; {fix}")
    if end - begin != need:
        raise CheckpointError(f"{where} has {end - begin} bytes, its shape {shape} of {dtype} needs {need}; {fix}")
    return Entry(torch_name, tuple(shape), data_start + begin, data_start + end)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tensor_digests(header: Header) -> dict[str, str]:
    """sha256 of every tensor's bytes as stored (layout-independent: the same tensor hashes the
    same in one file or in shards), read in bounded chunks."""
    out = {}
    with open(header.path, "rb") as f:
        for name, e in header.entries.items():
            f.seek(e.begin)
            h, left = hashlib.sha256(), e.nbytes
            while left:
                chunk = f.read(min(left, 1 << 22))
                if not chunk:
                    raise CheckpointError(f"{header.path} ended inside tensor {name!r}; the file is truncated")
                h.update(chunk)
                left -= len(chunk)
            out[name] = h.hexdigest()
    return out
