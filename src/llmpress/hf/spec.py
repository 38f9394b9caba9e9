"""What a transformers ``config.json`` must record for a compressed model to be rebuilt.

Kept free of transformers imports: :mod:`llmpress.checkpoint` writes it on every save, and
importing transformers' quantization machinery costs seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

QUANT_METHOD = "llmpress"
SPEC_VERSION = 2  # 2: a sha256 per stored tensor and of the quantization_config itself


def compressed_modules(model: nn.Module) -> dict[str, dict]:
    """name -> the module's ``meta()`` (format, shape, bits, ...) for every compressed module."""
    from llmpress.nn import MODULES

    return {name: m.meta() for name, m in model.named_modules() if type(m).__name__ in MODULES}


def storage_key(t) -> tuple:
    """Equal for two tensors that are the same memory viewed the same way (tied weights)."""
    return (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())


def buffer_aliases(model: nn.Module, modules: dict[str, dict]) -> dict[str, str]:
    """alias -> owner for buffers of compressed modules that are the same tensor as an earlier one.

    A palettized embedding's tied head holds the embedding's own table and indices; safetensors
    cannot store a tensor twice, so the second name is recorded and re-pointed after loading.
    """
    owner: dict[tuple, str] = {}
    aliases = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = storage_key(t)
        if t.numel() and key in owner and name.rpartition(".")[0] in modules:
            aliases[name] = owner[key]
        else:
            owner.setdefault(key, name)
    return aliases


def tensor_table(stored: dict) -> dict[str, dict]:
    """name -> {"sha256": digest of the tensor's bytes as stored} for every tensor about to be written,
    or {"same_as": name} for one sharing another's storage (a writer such as transformers keeps
    only one of them). Layout-independent: a reader hashes each tensor's byte range in whichever
    file or shard holds it."""
    import hashlib

    import torch

    out, owner = {}, {}
    for name, t in stored.items():
        key = storage_key(t)
        if t.numel() and key in owner:
            out[name] = {"same_as": owner[key]}
            continue
        owner[key] = name
        raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        out[name] = {"sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest()}
    return out


def quantization_config(model: nn.Module, method: str = "none", method_config: dict | None = None,
                        stored: dict | None = None) -> dict | None:
    """The ``quantization_config`` entry of config.json (sealed, with the hash of every tensor in
    ``stored``: what is about to be written), or None for a model with nothing compressed."""
    from llmpress.integrity import seal

    modules = compressed_modules(model)
    if not modules:
        return None
    return seal.sealed({"quant_method": QUANT_METHOD, "spec_version": SPEC_VERSION, "method": method,
                        "method_config": dict(method_config or {}), "modules": modules,
                        "aliases": buffer_aliases(model, modules), "tensors": tensor_table(stored or {})})


def is_llmpress_config(config: object) -> bool:
    """Whether a (transformers) model config carries an llmpress quantization_config."""
    q = getattr(config, "quantization_config", None)
    if q is None:
        return False
    method = q.get("quant_method") if isinstance(q, dict) else getattr(q, "quant_method", None)
    return method == QUANT_METHOD


def meta_device_tensors(model: nn.Module) -> list[str]:
    return [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
