"""Find the layers a method compresses, and swap modules in place."""

from __future__ import annotations

import torch
from torch import nn

from llmpress.errors import ConfigError


def output_embedding_names(model: nn.Module) -> set[str]:
    """Names of modules that produce logits (lm_head), which weight-only methods leave alone."""
    out = set()
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    for name, module in model.named_modules():
        if head is not None and module is head:
            out.add(name)
    return out


def compressible_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` except the output embedding, in module order."""
    skip = output_embedding_names(model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in skip]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear layers to compress (besides the output head); "
            "llmpress compresses transformer linear layers"
        )
    return layers


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def check_finite(name: str, weight: torch.Tensor) -> None:
    if not torch.isfinite(weight).all():
        raise ConfigError(f"layer {name} has NaN or Inf weights; the model is broken, fix it before compressing")
