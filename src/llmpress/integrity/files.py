"""The ``files`` table of a manifest: every listed file present, of its size, with its sha256."""

from __future__ import annotations

import re
from pathlib import Path

from llmpress.cache import sha256_file
from llmpress.errors import CheckpointError
from llmpress.integrity import jsonfile, names

_SHA256 = re.compile(r"[0-9a-f]{64}")


def describe(directory: Path, listed: list[str]) -> dict[str, dict]:
    """The ``files`` table of the named files of ``directory``, as a writer records it."""
    return {n: {"bytes": (directory / n).stat().st_size, "sha256": sha256_file(directory / n)} for n in listed}


def verify(directory: Path, table: object, where: str, fix: str) -> dict[str, Path]:
    """Check each entry (a plain name inside ``directory``, a byte count, a sha256) against the file
    on disk, sizes before hashes so a truncated file is named as such; returns name -> path."""
    if not isinstance(table, dict):
        raise CheckpointError(f"{where} lacks its 'files' table; {fix}")
    out = {}
    for name, info in table.items():
        f = names.member(directory, name, where)
        size = jsonfile.integer(jsonfile.field(info, "bytes", int, f"{where} entry {name!r}"), f"{where} size of {name}")
        digest = jsonfile.field(info, "sha256", str, f"{where} entry {name!r}")
        if not _SHA256.fullmatch(digest):
            raise CheckpointError(f"{where} gives {name} the sha256 {digest[:70]!r}, not 64 hex digits; {fix}")
        if not f.exists():
            raise CheckpointError(f"{f} is missing; the directory is incomplete, {fix}")
        names.regular_file(f, "listed in the manifest", fix)
        actual = f.stat().st_size
        if actual != size:
            what = "truncated" if actual < size else "larger than written"
            raise CheckpointError(f"{f} is {what}: {actual} bytes, the manifest says {size}; {fix}")
        if sha256_file(f) != digest:
            raise CheckpointError(f"{f} was modified after saving (sha256 mismatch); {fix}")
        out[name] = f
    return out
