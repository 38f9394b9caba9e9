"""Algorithms that turn float weights into compressed formats.

:data:`WEIGHT_METHODS` maps a method name to its config class and a function
``quantize_weight(weight [out, in], config) -> format``. :data:`CALIBRATED_METHODS` do the same
from the layer's calibration Hessian too: ``quantize(weight, hessian [in, in], config, layer name)
-> format``. A weight-only method may also use a Hessian when its config asks for one
(``config.calibrated``, e.g. sensitivity-weighted k-means): its ``quantize_calibrated`` has the
calibrated signature. Methods know nothing of torch.nn modules or the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError
from llmpress.methods import gptq, kmeans, rtn, shiftadd


@dataclass(frozen=True)
class WeightMethod:
    name: str
    config_cls: type[JsonConfig]
    quantize_weight: Callable[[Any, Any], Any]
    quantize_calibrated: Callable[..., Any] | None = None  # (weight, hessian, config, name) when config.calibrated


WEIGHT_METHODS: dict[str, WeightMethod] = {
    "rtn": WeightMethod("rtn", rtn.RTNConfig, rtn.quantize_weight),
    "kmeans": WeightMethod("kmeans", kmeans.KMeansConfig, kmeans.quantize_weight, kmeans.quantize),
}


CALIBRATED_METHODS: dict[str, WeightMethod] = {
    "gptq": WeightMethod("gptq", gptq.GPTQConfig, gptq.quantize),
    "shiftadd": WeightMethod("shiftadd", shiftadd.ShiftAddConfig, shiftadd.quantize),
}


def needs_calibration(method: str, config) -> bool:
    """Whether ``method`` with ``config`` quantizes from calibration Hessians."""
    return method in CALIBRATED_METHODS or bool(getattr(config, "calibrated", False))


def get_method(name: str) -> WeightMethod:
    """A weight-only or calibrated method by name (``name in CALIBRATED_METHODS`` tells which)."""
    try:
        return WEIGHT_METHODS.get(name) or CALIBRATED_METHODS[name]
    except KeyError:
        known = sorted(WEIGHT_METHODS) + sorted(CALIBRATED_METHODS)
        raise ConfigError(f"unknown method {name!r}; available: {known}") from None


# Delta compressors (fine-tune minus base) have their own driver: llmpress.models.delta.
from llmpress.methods.deltadq import CONFIGS as DELTA_METHODS  # noqa: E402
