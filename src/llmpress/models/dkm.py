"""Wrap a model's modules with DKM for train-time clustering."""

from __future__ import annotations

from torch import nn
from tqdm.auto import tqdm

from llmpress.methods.dkm import DKMModelConfig
from llmpress.models.layers import compressible_linears, output_embedding_names, set_module
from llmpress.nn.dkm import DKMEmbedding, DKMLinear, DKMTiedHead


def prepare(model: nn.Module, config: DKMModelConfig | None = None, progress: bool = False) -> list[str]:
    """Replace the chosen ``nn.Linear`` / input ``nn.Embedding`` modules of ``model`` by DKM modules,
    in place; return the wrapped names. The parameters stay the same objects, so an optimizer
    built before or after sees the same weights. A tied output head follows its embedding.
    """
    config = config or DKMModelConfig()
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
    wrapped = {}
    for name, module, c in tqdm(chosen, desc="DKM prepare", unit="module", disable=not progress):
        cls = DKMEmbedding if isinstance(module, nn.Embedding) else DKMLinear
        wrapped[name] = cls(module, c, name=name)
        set_module(model, name, wrapped[name])
    if embed_name in wrapped:
        for head_name in output_embedding_names(model):
            head = model.get_submodule(head_name)
            if isinstance(head, nn.Linear) and head.weight is wrapped[embed_name].weight:
                set_module(model, head_name, DKMTiedHead(head, wrapped[embed_name]))
    return list(wrapped)
