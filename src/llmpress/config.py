"""Base for dataclass configs: validation lives in each ``__post_init__``; JSON round trip here."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from llmpress.errors import ConfigError

T = TypeVar("T", bound="JsonConfig")


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
