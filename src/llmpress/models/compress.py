"""Apply a weight-level method to every compressible layer of a model, in place."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.errors import ConfigError
from llmpress.methods import get_method, needs_calibration
from llmpress.models.layers import check_finite, compressible_linears, set_module
from llmpress.nn import CompressedLinear

# Tensors a method does not compress (embedding, norms, biases) are stored as float16.
STORAGE_DTYPE = torch.float16


def round_uncompressed(model: nn.Module, dtype: torch.dtype = STORAGE_DTYPE) -> None:
    """Round float parameters to ``dtype`` values in place (their dtype stays), so the in-memory
    model computes exactly what a saved-and-loaded checkpoint computes."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != dtype:
                p.copy_(p.to(dtype).to(p.dtype))


def compress_model(model: nn.Module, method: str, config, progress: bool = True) -> list[str]:
    """Replace each compressible ``nn.Linear`` by a :class:`CompressedLinear`; return their names."""
    m = get_method(method)
    if needs_calibration(method, config):
        raise ConfigError(f"{method!r} with these settings needs calibration data: use "
                          "models.calibrated.compress_calibrated")
    if not isinstance(config, m.config_cls):
        raise TypeError(f"method {method!r} takes a {m.config_cls.__name__}, got {type(config).__name__}")
    layers = compressible_linears(model)
    for name, linear in tqdm(layers, desc=f"{method} compress", unit="layer", disable=not progress):
        check_finite(name, linear.weight)
        fmt = m.quantize_weight(linear.weight.data, config)
        module = CompressedLinear(fmt, linear.bias.data if linear.bias is not None else None)
        set_module(model, name, module.to(linear.weight.device))
    round_uncompressed(model)
    return [n for n, _ in layers]
