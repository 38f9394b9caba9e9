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


def replaceable(model: nn.Module, name: object, meta: dict, where: str) -> None:
    """Raise CheckpointError unless ``model`` has a plain ``nn.Linear`` / ``nn.Embedding`` at ``name``
    of the shape the compressed-module entry ``meta`` (read from ``where``) describes."""
    from llmpress.errors import CheckpointError
    from llmpress.nn import MODULES, CompressedEmbedding

    kind = meta.get("module") if isinstance(meta, dict) else None
    cls = MODULES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        got = kind if isinstance(meta, dict) else meta
        raise CheckpointError(f"{where} uses module {str(got)[:40]!r}, unknown to this llmpress (known: "
                              f"{sorted(MODULES)}); upgrade llmpress or re-create the checkpoint")
    try:
        old = model.get_submodule(name) if isinstance(name, str) and name else None
    except AttributeError:
        old = None
    if old is None:
        raise CheckpointError(f"{where} names no module of {type(model).__name__}; the checkpoint does not belong "
                              "to this model config")
    want = nn.Embedding if cls is CompressedEmbedding else nn.Linear
    shape = meta.get("shape")
    have = [old.num_embeddings, old.embedding_dim] if isinstance(old, nn.Embedding) else \
        [getattr(old, "out_features", None), getattr(old, "in_features", None)]
    if not isinstance(old, want) or have != shape:
        raise CheckpointError(f"{where} stores a {cls.__name__} {str(shape)[:60]}, but the model config makes it "
                              f"a {type(old).__name__} {have}; the checkpoint does not fit its config, re-create it")


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def check_finite(name: str, weight: torch.Tensor) -> None:
    if not torch.isfinite(weight).all():
        raise ConfigError(f"layer {name} has NaN or Inf weights; the model is broken, fix it before compressing")
