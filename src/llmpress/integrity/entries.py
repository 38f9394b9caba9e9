"""Objects rebuilt from a manifest entry (a module or format ``meta()``), on the meta device."""

from __future__ import annotations

import json
from typing import Callable, TypeVar

import torch

from llmpress.errors import CheckpointError

T = TypeVar("T")


def rebuild(build: Callable[[dict], T], meta: object, where: str, what: str) -> T:
    """``build(meta)`` with every tensor on the meta device (a claimed shape costs no memory), and
    only if the result describes itself exactly as ``meta`` does: no unknown keys, no 3.7 bits
    silently read as 3, no string where a number belongs."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where} is {type(meta).__name__}, not a table; the file is corrupt, re-create it")
    try:
        with torch.device("meta"):
            obj = build(meta)
        described = json.loads(json.dumps(obj.meta()))
    except Exception as exc:  # a bad entry can fail any constructor, with any exception type
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise CheckpointError(f"{where} is not a valid {what} ({type(exc).__name__}: {reason}); the file is corrupt, "
                              "re-create it") from None
    if described != meta:
        diff = sorted(str(k) for k in set(described) | set(meta) if described.get(k) != meta.get(k))
        raise CheckpointError(f"{where} differs from any {what} llmpress writes (in {diff[:5]}); the file is corrupt "
                              "or crafted, re-create it")
    return obj
