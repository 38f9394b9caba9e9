"""The self-hash of a manifest: sha256 over its canonical JSON without the hash itself.

It detects accidents and edits of the manifest (a flipped byte, a hand-edited shape); it is not
a signature, so whoever rewrites a manifest can also recompute it. The deeper checks (sizes
bounded by the bytes present, the module table against the tensor table) hold either way.
"""

from __future__ import annotations

import hashlib
import json

from llmpress.errors import CheckpointError

KEY = "manifest_sha256"


def canonical(table: dict) -> bytes:
    """One byte string per content: sorted keys, no whitespace, ASCII only (an infinite ratio is
    written as Python's json writes it, ``Infinity``)."""
    return json.dumps(table, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(table: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in table.items() if k != KEY})).hexdigest()


def sealed(table: dict) -> dict:
    """``table`` with its self-hash added under :data:`KEY`."""
    return {**table, KEY: digest(table)}


def check(table: dict, where: str, fix: str) -> None:
    """Raise unless ``table`` carries the self-hash of its current content."""
    stored = table.get(KEY)
    if not isinstance(stored, str):
        raise CheckpointError(f"{where} carries no {KEY}: it was written by an older llmpress or edited; {fix}")
    if digest(table) != stored:
        raise CheckpointError(f"{where} was modified after it was written ({KEY} does not match its content); {fix}")
