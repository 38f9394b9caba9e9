"""Helpers that damage or forge llmpress directories the way an attacker or an accident would.

``forge`` rewrites a manifest after an edit and recomputes the hashes it carries (file table and
self-hash), so the structural checks behind them are what a test exercises.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

from llmpress.cache import sha256_file
from llmpress.integrity import seal


def rehash_files(directory: Path, manifest: dict) -> None:
    """Make the manifest's ``files`` table match the files now on disk (entries it can resolve)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return
    for name, info in files.items():
        f = directory / name if isinstance(name, str) and "/" not in name and name not in ("", ".", "..") else None
        if f is not None and f.is_file() and isinstance(info, dict):
            info["bytes"], info["sha256"] = f.stat().st_size, sha256_file(f)


def forge(directory: Path, manifest_name: str, edit: Callable[[dict], object] | None = None,
          *, reseal: bool = True) -> None:
    """Apply ``edit`` to the manifest (after re-hashing the files), then re-seal it unless told not to."""
    mf = directory / manifest_name
    manifest = json.loads(mf.read_text())
    rehash_files(directory, manifest)
    if edit is not None:
        edit(manifest)
    if reseal and isinstance(manifest, dict):
        manifest = seal.sealed(manifest)
    mf.write_text(json.dumps(manifest))


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """(header JSON, data section) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: object, data: bytes, length: int | None = None) -> None:
    """Write a (possibly invalid) safetensors file; ``length`` overrides the header-length prefix."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
