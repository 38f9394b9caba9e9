"""Wrap a model's modules with DKM for train-time clustering, and finalize them into palettes."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.errors import ConfigError
from llmpress.formats.palette import palettize
from llmpress.methods.dkm import DKMModelConfig
from llmpress.models.calibration import hessian_diagonals
from llmpress.models.layers import compressible_linears, output_embedding_names, set_module
from llmpress.nn import CompressedEmbedding, CompressedLinear
from llmpress.nn.dkm import DKMEmbedding, DKMLinear, DKMTiedHead


def prepare(model: nn.Module, config: DKMModelConfig | None = None, progress: bool = False,
            centroids: dict[str, torch.Tensor] | None = None,
            importance: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Replace the chosen ``nn.Linear`` / input ``nn.Embedding`` modules of ``model`` by DKM modules,
    in place; return the wrapped names. The parameters stay the same objects, so an optimizer
    built before or after sees the same weights. A tied output head follows its embedding.

    ``centroids``: starting tables [G, K, d] by module name (e.g. :func:`palette_tables` of a
    post-training palette of the same model); modules not named start from k-means++.
    ``importance``: [in_features] per linear name (e.g. :func:`hessian_importance`); required, for
    every wrapped linear, when ``config.sensitivity`` is not "none".
    """
    centroids = centroids or {}
    config = config or DKMModelConfig()
    if config.sensitivity != "none" and importance is None:
        raise ConfigError(f"DKM sensitivity={config.sensitivity!r} needs each linear's importance; compute it with "
                          "llmpress.models.dkm.hessian_importance(model, calibration_ids) and pass importance=")
    if config.sensitivity == "none" and importance:
        raise ConfigError("importance was given but the DKM config has sensitivity='none'; set "
                          "sensitivity='hessian' so the checkpoint records how it was clustered")
    importance = importance or {}
    chosen: list[tuple[str, nn.Module, object]] = []
    for name, linear in compressible_linears(model):
        c = config.for_module(name, "linear")
        if c is not None:
            chosen.append((name, linear, c))
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_name = next((n for n, m in model.named_modules() if m is embed), None) if embed is not None else None
    if embed_name is not None and isinstance(embed, nn.Embedding):
        c = config.for_module(embed_name, "embedding")
        if c is not None:
            chosen.append((embed_name, embed, c))
    if config.sensitivity != "none":
        missing = [n for n, m, _ in chosen if isinstance(m, nn.Linear) and n not in importance]
        if missing:
            raise ConfigError(f"DKM sensitivity={config.sensitivity!r}: no importance for {missing[:3]}")
    wrapped = {}
    for name, module, c in tqdm(chosen, desc="DKM prepare", unit="module", disable=not progress):
        if isinstance(module, nn.Embedding):
            wrapped[name] = DKMEmbedding(module, c, name=name, centroids=centroids.get(name))
        else:
            wrapped[name] = DKMLinear(module, c, name=name, centroids=centroids.get(name),
                                      importance=importance.get(name))
        set_module(model, name, wrapped[name])
    if embed_name in wrapped:
        for head_name in output_embedding_names(model):
            head = model.get_submodule(head_name)
            if isinstance(head, nn.Linear) and head.weight is wrapped[embed_name].weight:
                set_module(model, head_name, DKMTiedHead(head, wrapped[embed_name]))
    return list(wrapped)


def hessian_importance(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """The importance ``prepare`` weights DKM with under ``sensitivity="hessian"``: for each
    compressible linear, diag(X^T X) [in_features] of its inputs over the calibration tokens
    ``ids`` [n, seqlen] (one forward pass of the model as it is, before any clustering)."""
    names = [n for n, _ in compressible_linears(model)]
    return hessian_diagonals(model, ids, names, batch_size)


def palette_tables(model: nn.Module) -> dict[str, torch.Tensor]:
    """The lookup tables [G, K, d] of every palettized module of ``model``, by module name: the
    starting centroids that continue DKM from a post-training palette (e.g. sensitivity-weighted
    k-means). A tied head, which shares its embedding's table, is left out."""
    tables, seen = {}, set()
    for name, m in model.named_modules():
        if isinstance(m, (CompressedLinear, CompressedEmbedding)) and m.meta()["format"] == "palette":
            lut = m.packed().lut
            if lut.data_ptr() not in seen:
                seen.add(lut.data_ptr())
                tables[name] = lut.float().clone()
    return tables


def palette_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The decoded weight [out, in] of every palettized linear of ``model``, by module name: the
    starting fp32 weights that continue DKM from a post-training palette whose indices carry more
    than nearest-entry rounding (e.g. k-means with error feedback)."""
    return {name: m.packed().dequantize(torch.float32) for name, m in model.named_modules()
            if isinstance(m, CompressedLinear) and m.meta()["format"] == "palette"}


def finalize(model: nn.Module) -> list[str]:
    """Replace every DKM module of ``model`` by its palettized module, in place: each weight (or
    vector) becomes the index of its nearest centroid in a float16 table. A tied head shares the
    embedding's table and indices. Returns the replaced names.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (DKMLinear, DKMEmbedding, DKMTiedHead))]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no DKM modules to finalize; wrap it with prepare() and train first")
    untrained = [n for n, m in found if not isinstance(m, DKMTiedHead) and int(m.steps) == 0]
    if untrained:
        raise ConfigError(f"finalize() before any training step: {untrained[:3]} never ran a training forward; train "
                          "first, or use post-training clustering (`llmpress compress --method kmeans`)")
    done: dict[int, CompressedEmbedding] = {}
    for name, m in found:
        if isinstance(m, DKMTiedHead):
            continue
        fmt = palettize(m.weight.detach(), m.centroids, m.config.group_size)
        if isinstance(m, DKMEmbedding):
            done[id(m)] = CompressedEmbedding(fmt, m.padding_idx).to(m.weight.device)
            set_module(model, name, done[id(m)])
        else:
            bias = m.bias.detach() if m.bias is not None else None
            set_module(model, name, CompressedLinear(fmt, bias).to(m.weight.device))
    for name, m in found:
        if isinstance(m, DKMTiedHead):
            set_module(model, name, CompressedLinear(done[id(m.embedding[0])].packed(), m.bias))
    return [n for n, _ in found]
