"""JSON read from untrusted files: bounded in size and depth, and typed field access."""

from __future__ import annotations

import json
from pathlib import Path

from llmpress.errors import CheckpointError

# A manifest of a 70B model lists a few thousand modules: well under this.
MAX_JSON_BYTES = 64 << 20


def read(path: Path, what: str, fix: str, limit: int = MAX_JSON_BYTES) -> object:
    """The parsed JSON of ``path``; too large, undecodable, too deeply nested or with numbers
    Python refuses to parse (over 4300 digits) is one CheckpointError."""
    size = path.stat().st_size
    if size > limit:
        raise CheckpointError(f"{path} ({what}) is {size} bytes, more than the {limit} a manifest may have; {fix}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} ({what}) is not valid JSON ({reason}); {fix}") from None


def field(table: object, key: str, kind: type | tuple[type, ...], where: str) -> object:
    """``table[key]`` if ``table`` is a dict and the value has type ``kind`` (bool is not an int)."""
    if not isinstance(table, dict):
        raise CheckpointError(f"{where} is {type(table).__name__}, not a table; the file is corrupt, re-create it")
    value = table.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise CheckpointError(f"{where} has {key}={_short(value)}, expected {names}; the file is corrupt, re-create it")
    return value


def integer(value: object, where: str, lo: int = 0, hi: int = 1 << 62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CheckpointError(f"{where} is {_short(value)}, expected an integer in [{lo}, {hi}]; the file is "
                              "corrupt, re-create it")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


NUMBER = (int, float)
ANY_KEY = "*"


def conform(value: object, schema: object, where: str) -> None:
    """Check ``value`` against ``schema``: a type or tuple of types (``None`` for null), a dict of
    key -> schema (:data:`ANY_KEY` for every other key; listed keys are required), or a one-item
    list whose item is the schema of every element. For the informational tables a reader prints
    (sizes, per-layer rows), so that a forged one is refused instead of crashing the printer."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise CheckpointError(f"{where} is {type(value).__name__}, not a table; the file is corrupt, re-create it")
        for key, sub in schema.items():
            if key != ANY_KEY:
                if key not in value:
                    raise CheckpointError(f"{where} lacks {key!r}; the file is corrupt, re-create it")
                conform(value[key], sub, f"{where}.{key}")
        if ANY_KEY in schema:
            for key, item in value.items():
                if key not in schema:
                    conform(item, schema[ANY_KEY], f"{where}.{str(key)[:40]}")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise CheckpointError(f"{where} is {type(value).__name__}, not a list; the file is corrupt, re-create it")
        for i, item in enumerate(value):
            conform(item, schema[0], f"{where}[{i}]")
    else:
        kinds = tuple(type(None) if k is None else k for k in (schema if isinstance(schema, tuple) else (schema,)))
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise CheckpointError(f"{where} is {_short(value)}, expected {names}; the file is corrupt, re-create it")
