"""Exact storage accounting: what a checkpoint of this model stores, byte for byte."""

from __future__ import annotations

import torch
from torch import nn

from llmpress.models.layers import output_embedding_names
from llmpress.nn import CompressedEmbedding, FormatModule


def _float_bytes(t: torch.Tensor, storage_dtype: torch.dtype) -> int:
    size = torch.tensor([], dtype=storage_dtype).element_size() if t.is_floating_point() else t.element_size()
    return t.numel() * size


def storage_report(model: nn.Module, storage_dtype: torch.dtype = torch.float16) -> dict:
    """Per-layer rows and totals (bytes; bits per weight = stored bits / original weights).

    Groups: ``compressed`` (linear layers held in a compressed format), ``embedding`` (input
    embedding, compressed or not), ``lm_head`` (0 extra bytes when tied to the embedding, also
    when both are compressed and share their tables), ``other`` (norms, biases, uncompressed
    linears). Float tensors outside a format count at ``storage_dtype``;
    ``fp16_bytes`` is the same model with every weight at 16 bits.
    """
    rows = []
    groups = {"compressed": [0, 0], "embedding": [0, 0], "lm_head": [0, 0], "other": [0, 0]}
    seen: set[int] = set()
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    heads = output_embedding_names(model)
    fp16_bytes = 0
    for name, module in model.named_modules():
        group = "embedding" if module is embed else "lm_head" if name in heads else "other"
        if isinstance(module, FormatModule):
            fmt = module.packed()
            shared = any(t.data_ptr() in seen for t in fmt.tensors().values())
            n, b = fmt.spec.shape[0] * fmt.spec.shape[1], 0 if shared else module.nbytes
            seen.update(t.data_ptr() for t in fmt.tensors().values())
            rows.append({"name": name, "shape": list(fmt.spec.shape), "format": fmt.meta()["format"],
                         "bits": fmt.meta().get("bits"), "params": n, "bytes": b,
                         "bits_per_weight": 8 * b / n, **({"shared": True} if shared else {})})
            if not shared:  # a head tied to a compressed embedding adds nothing, as a tied weight does
                kind = "embedding" if isinstance(module, CompressedEmbedding) else \
                    "lm_head" if name in heads else "compressed"
                groups[kind][0] += n
                groups[kind][1] += b
                fp16_bytes += 2 * n
            group = "other"  # what remains as parameters is the bias
        for t in module.parameters(recurse=False):
            if t.data_ptr() in seen:
                continue  # tied weights are stored once
            seen.add(t.data_ptr())
            groups[group][0] += t.numel()
            groups[group][1] += _float_bytes(t, storage_dtype)
            fp16_bytes += 2 * t.numel()
    total = sum(b for _, b in groups.values())
    params = sum(n for n, _ in groups.values())
    return {
        "layers": rows,
        "groups": {k: {"params": n, "bytes": b, "bits_per_weight": (8 * b / n) if n else 0.0}
                   for k, (n, b) in groups.items()},
        "total_params": params,
        "total_bytes": total,
        "fp16_bytes": fp16_bytes,
        "bits_per_weight": 8 * total / params if params else 0.0,
        "storage_dtype": str(storage_dtype).removeprefix("torch."),
    }
