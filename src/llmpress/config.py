"""Base for dataclass configs: validation lives in each ``__post_init__``; JSON round trip here."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from llmpress.errors import ConfigError

T = TypeVar("T", bound="JsonConfig")


def check_int(owner: str, name: str, value: Any, lo: int, hi: int | None = None) -> None:
    """Raise a ConfigError unless ``value`` is an integer (not a bool) in lo..hi (hi None = no bound)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        span = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{owner} {name} must be an integer {span}, got {value!r}")


@dataclasses.dataclass
class JsonConfig:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))
