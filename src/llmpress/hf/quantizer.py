"""transformers quantizer for llmpress checkpoints: ``from_pretrained`` / ``save_pretrained``.

Registered under ``quant_method="llmpress"`` when transformers' quantizer registry is first
imported after ``import llmpress`` (see :mod:`llmpress.hf`). **Import order matters**: without
``import llmpress`` before ``from_pretrained``, transformers logs "Unknown quantization type,
got llmpress ... we will skip the quantization" and builds a plain float model whose linear
weights are randomly initialized (every compressed tensor is reported as unexpected). Always::

    import llmpress  # registers quant_method "llmpress" with transformers
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("smol-rtn3")

On load, every module listed in ``quantization_config.modules`` is replaced by its llmpress
module (CompressedLinear, ShiftAddLinear, CompressedEmbedding) before the weights load, so the
stored codes, scales and tables load straight into its buffers. On save, the state dict is the
model's own minus the buffer aliases of a tied palettized head, and ``quantization_config`` is
recomputed from the modules, so what is written is what is in memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from transformers.quantizers.base import HfQuantizer

from llmpress.errors import CheckpointError
from llmpress.hf.config import LlmpressConfig
from llmpress.hf.spec import QUANT_METHOD, buffer_aliases, compressed_modules, meta_device_tensors, tensor_table
from llmpress.integrity import seal
from llmpress.integrity.entries import rebuild
from llmpress.integrity.safetensors_header import read_header, tensor_digests
from llmpress.models.layers import replaceable, set_module
from llmpress.nn import MODULES, CompressedEmbedding


def _tied_key_maps(model: nn.Module):
    """(prefix, mapping) for every submodel holding transformers' {target: source} tied-weight table."""
    for prefix, sub in model.named_modules():
        keys = getattr(sub, "all_tied_weights_keys", None)
        if isinstance(keys, dict):
            yield (prefix + "." if prefix else ""), keys


class LlmpressHfQuantizer(HfQuantizer):
    """Loads and saves models whose config.json has ``quantization_config.quant_method == "llmpress"``.

    Only pre-compressed checkpoints: compress with ``llmpress compress`` (or
    :func:`llmpress.api.compress`), not by passing this config to ``from_pretrained``.
    """

    requires_calibration = True  # refuses on-the-fly quantization with a clear transformers error

    def validate_environment(self, *args, **kwargs):
        device_map = kwargs.get("device_map")
        if isinstance(device_map, dict) and "disk" in map(str, device_map.values()):
            # Offloaded buffers stay on the meta device, and a tied head's shared buffers cannot be re-pointed.
            raise ValueError("llmpress checkpoints cannot be offloaded to disk; map every module to a device")

    def _process_model_before_weight_loading(self, model, checkpoint_files=None, **kwargs):
        cfg: LlmpressConfig = self.quantization_config
        verify_tensor_files(cfg, checkpoint_files)
        for name, meta in cfg.modules.items():
            where = f"quantization_config module {name!r}"
            replaceable(model, name, meta, where)
            # On the meta device: the loader assigns the stored tensors, no placeholder memory is spent.
            set_module(model, name, rebuild(MODULES[meta["module"]].from_meta, meta, where, meta["module"]))
        # transformers ties lm_head.weight to embed_tokens.weight by name; a compressed module has no
        # ``weight``, so such ties are dropped and replaced by re-pointing the aliased buffers.
        replaced = set(cfg.modules)
        for prefix, keys in _tied_key_maps(model):
            for target, source in list(keys.items()):
                owners = {(prefix + target).rpartition(".")[0], (prefix + source).rpartition(".")[0]}
                if owners & replaced:
                    del keys[target]
        ignore = {f"^{re.escape(alias)}$" for alias in cfg.aliases}
        model._keys_to_ignore_on_load_missing = set(model._keys_to_ignore_on_load_missing or ()) | ignore
        return model

    def _process_model_after_weight_loading(self, model, **kwargs):
        repoint_aliases(model, self.quantization_config.aliases)
        empty = meta_device_tensors(model)
        if empty:
            raise CheckpointError(f"the checkpoint leaves {empty[:5]} unset; it is truncated or for another model")
        return model

    def get_state_dict_and_metadata(self, model):
        cfg: LlmpressConfig = self.quantization_config
        modules = compressed_modules(model)
        if not modules:
            raise CheckpointError("the model has no llmpress compressed modules left; save it without "
                                  "quantization_config (model.hf_quantizer.remove_quantization_config(model))")
        cfg.modules, cfg.aliases = modules, buffer_aliases(model, modules)
        state = {k: v for k, v in model.state_dict().items() if k not in cfg.aliases}
        cfg.tensors = tensor_table(state)
        cfg.manifest_sha256 = seal.digest(cfg.to_dict())  # the digest leaves its own key out
        return state, {"producer": "llmpress"}

    def _dequantize(self, model, dtype=None):
        return dequantize_modules(model, dtype or torch.float32)

    def is_serializable(self, **kwargs):
        return True

    @property
    def is_trainable(self) -> bool:
        return True

    @property
    def is_qat_trainable(self) -> bool:
        # Lets ``Trainer`` run on the model as loaded: the float parameters (norms, uncompressed
        # embedding / head) train, the compressed weights are integer buffers and stay fixed.
        # To keep clustering the weights (DKM), dequantize() and wrap with llmpress.models.dkm.
        return True


def verify_tensor_files(cfg: LlmpressConfig, files: list[str] | None) -> None:
    """Check ``cfg`` against its own hash, then every tensor in the safetensors ``files`` (one file or
    shards) against ``cfg.tensors``, before transformers reads any weight."""
    seal.check(cfg.to_dict(), "quantization_config in config.json", "re-create the checkpoint")
    if not files or not all(str(f).endswith(".safetensors") for f in files):
        raise CheckpointError(f"an llmpress model loads only from safetensors files, got {files}; re-save it with "
                              "save_pretrained (safe_serialization is the default)")
    found = {}
    for f in files:
        found.update(tensor_digests(read_header(Path(f), "model weights")))
    for name, digest in found.items():
        want = cfg.tensors.get(name)
        if not isinstance(want, dict) or want.get("sha256") != digest:
            what = "is not listed in" if not isinstance(want, dict) else "differs from the sha256 in"
            raise CheckpointError(f"tensor {name} in {Path(files[0]).parent} {what} quantization_config; the weights "
                                  "were modified after saving or belong to another model, re-create the checkpoint")
    for name, want in cfg.tensors.items():
        if name not in found and not (isinstance(want, dict) and want.get("same_as") in found):
            raise CheckpointError(f"tensor {name} listed in quantization_config is in none of {len(files)} weight "
                                  "file(s); the checkpoint is incomplete, re-create it")


def repoint_aliases(model: nn.Module, aliases: dict[str, str]) -> None:
    """Make every alias buffer the very tensor of its owner again (shared memory, as saved)."""
    for alias, owner in aliases.items():
        module_name, _, attr = alias.rpartition(".")
        owner_module, _, owner_attr = owner.rpartition(".")
        try:
            tensor = model.get_submodule(owner_module).get_buffer(owner_attr) if owner_module else model.get_buffer(owner)
            setattr(model.get_submodule(module_name), attr, tensor)
        except AttributeError as exc:
            raise CheckpointError(f"alias {alias} -> {owner} does not fit the model ({exc}); the checkpoint is "
                                  "corrupt") from None


def dequantize_modules(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Replace every compressed module by a plain ``nn.Linear`` / ``nn.Embedding`` with its
    dequantized weight (in ``dtype``); a tied head shares the embedding's new weight again."""
    found = [(n, m) for n, m in model.named_modules() if type(m).__name__ in MODULES]
    dense: dict[tuple, nn.Parameter] = {}
    for name, m in found:
        key = tuple(m.packed().tensors()[k].data_ptr() for k in m._tensor_names)
        weight = dense.get(key)
        if weight is None:
            weight = dense[key] = nn.Parameter(m.dequantize(torch.float32).to(dtype))
        device = weight.device
        if isinstance(m, CompressedEmbedding):
            new = nn.Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, device="meta")
        else:
            new = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
            if m.bias is not None:
                new.bias = nn.Parameter(m.bias.detach().to(device=device, dtype=dtype))
        new.weight = weight
        set_module(model, name, new)
    return model


def attach(model: nn.Module, method: str = "none", method_config: dict | None = None) -> nn.Module:
    """Give a model compressed by llmpress (not loaded through ``from_pretrained``) the llmpress
    quantizer, so ``model.save_pretrained`` writes a checkpoint transformers and llmpress load."""
    modules = compressed_modules(model)
    cfg = LlmpressConfig(modules=modules, aliases=buffer_aliases(model, modules), method=method,
                         method_config=dict(method_config or {}))
    quantizer = LlmpressHfQuantizer(cfg, pre_quantized=True)
    model.config.quantization_config = cfg
    model.hf_quantizer = quantizer
    model.is_quantized = True
    model.quantization_method = QUANT_METHOD
    return model
