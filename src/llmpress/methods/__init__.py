"""Algorithms that turn float weights into compressed formats.

:data:`WEIGHT_METHODS` maps a method name to its config class and a function
``quantize_weight(weight [out, in], config) -> format``. Methods know nothing of torch.nn
modules or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError
from llmpress.methods import rtn


@dataclass(frozen=True)
class WeightMethod:
    name: str
    config_cls: type[JsonConfig]
    quantize_weight: Callable[[Any, Any], Any]


WEIGHT_METHODS: dict[str, WeightMethod] = {
    "rtn": WeightMethod("rtn", rtn.RTNConfig, rtn.quantize_weight),
}


def get_method(name: str) -> WeightMethod:
    try:
        return WEIGHT_METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; available: {sorted(WEIGHT_METHODS)}") from None


# Delta compressors (fine-tune minus base) have their own driver: llmpress.models.delta.
from llmpress.methods.deltadq import CONFIGS as DELTA_METHODS  # noqa: E402
