"""An llmpress model of uniform codes as a compressed-tensors ``pack-quantized`` folder (vLLM, transformers).

compressed-tensors stores a b-bit symmetric integer weight as signed codes q' in [-2**(b-1), 2**(b-1))
packed into int32 words and a scale per (row, group), w = q' x scale. llmpress's symmetric codes
(``--symmetric``: every zero 2**(b-1)) are unsigned with w = (q - 2**(b-1)) x scale, so
q' = q - 2**(b-1) gives the same weights exactly. Scales are stored as float32 (each exactly
llmpress's float16 scale), so the decompressed weight, computed in the scale's dtype, equals
llmpress's float32 decoding bit for bit. The packing and the config are compressed-tensors' own
(``pack_to_int32``, ``QuantizationConfig``), so the folder is what that library writes.

Refused in one line: asymmetric codes (compressed-tensors 0.20.1 packs zero points into int32 rows,
but the model its transformers integration builds to load them expects them unpacked: such a folder,
written as that library writes it, fails to load - measured), other formats (palettes, binary
codes), a ragged last group (groups must divide the width), a compressed embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from llmpress.cache import atomic_directory
from llmpress.errors import ConfigError
from llmpress.formats.uniform import UniformTensor
from llmpress.nn import CompressedLinear, FormatModule


def _library():
    try:
        import compressed_tensors  # noqa: F401
    except ImportError:
        raise ConfigError("export --to compressed-tensors needs the compressed-tensors package: "
                          "pip install 'llmpress[compressed-tensors]'") from None
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme

    return pack_to_int32, QuantizationArgs, QuantizationConfig, QuantizationScheme


def scheme_key(fmt: UniformTensor, name: str) -> tuple[int, int, bool]:
    """(bits, group size or 0 for one group per row, symmetric) of a layer, or why it cannot be written."""
    s = fmt.spec
    cols = s.shape[1]
    if cols % s.group:
        raise ConfigError(f"{name}: group {s.group} leaves a ragged last group on {cols} columns; compressed-tensors "
                          "groups must divide the width (compress with a group size that divides it)")
    if not bool((fmt.int_zeros() == 1 << (s.bits - 1)).all()):
        raise ConfigError(f"{name}: asymmetric codes (zero points) do not load through compressed-tensors' "
                          "transformers integration; compress with --symmetric")
    return s.bits, 0 if s.group == cols else s.group, True


def layer_tensors(fmt: UniformTensor, pack_to_int32) -> dict[str, torch.Tensor]:
    """weight_packed (int32), weight_scale (float32 [rows, groups]), weight_shape of a symmetric layer."""
    half = 1 << (fmt.spec.bits - 1)
    fmt = type(fmt)(fmt.spec, **{k: v.cpu() for k, v in fmt.tensors().items()})  # a file is written from the host
    return {"weight_packed": pack_to_int32((fmt.int_codes().to(torch.int16) - half).to(torch.int8), fmt.spec.bits),
            "weight_scale": fmt.scale.to(torch.float32).contiguous(),
            "weight_shape": torch.tensor(list(fmt.spec.shape), dtype=torch.int64)}


def _args(QuantizationArgs, bits: int, group: int, symmetric: bool):
    strategy = {"strategy": "group", "group_size": group} if group else {"strategy": "channel"}
    return QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, dynamic=False, **strategy)


def state_and_config(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """The folder's tensors and its ``quantization_config``."""
    pack_to_int32, QuantizationArgs, QuantizationConfig, QuantizationScheme = _library()
    state: dict[str, torch.Tensor] = {}
    groups: dict[tuple, list[str]] = {}
    ignore = []
    handled = set()
    for name, m in model.named_modules():
        if isinstance(m, FormatModule):
            fmt = m.packed()
            if not isinstance(fmt, UniformTensor) or not isinstance(m, CompressedLinear):
                raise ConfigError(f"{name}: compressed-tensors pack-quantized holds integer codes of linear layers; "
                                  f"this layer is {type(m).__name__} over {fmt.FORMAT} weights")
            key = scheme_key(fmt, name)
            groups.setdefault(key, []).append(name)
            state.update({f"{name}.{k}": v for k, v in layer_tensors(fmt, pack_to_int32).items()})
            if m.bias is not None:
                state[f"{name}.bias"] = m.bias.detach().to(torch.float32).cpu().contiguous()
            handled.update(f"{name}.{n}" for n in (*m._tensor_names, "bias"))
        elif isinstance(m, nn.Linear):
            ignore.append(name)
    for key, t in model.state_dict().items():
        if key not in handled and key not in state:
            state[key] = t.detach().to(torch.float32).cpu().contiguous() if t.is_floating_point() else t.cpu()
    config_groups = {
        f"group_{i}": QuantizationScheme(targets=names if len(groups) > 1 else ["Linear"],
                                         weights=_args(QuantizationArgs, *key))
        for i, (key, names) in enumerate(sorted(groups.items()))}
    if not config_groups:
        raise ConfigError("the model has no uniform-code layers to write as compressed-tensors")
    config = QuantizationConfig(config_groups=config_groups, format="pack-quantized", quantization_status="compressed",
                                ignore=ignore)
    return state, config.model_dump(exclude_none=False)


def write(model: nn.Module, tokenizer, out: str | Path, overwrite: bool = False) -> dict:
    from safetensors.torch import save_file

    state, quantization_config = state_and_config(model)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied:
        state.pop("lm_head.weight", None)  # transformers ties it back to the embedding
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.update(quantization_config=quantization_config, torch_dtype="float32")
        config.pop("dtype", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    groups = quantization_config["config_groups"]
    return {"path": str(out), "bytes": sum(p.stat().st_size for p in Path(out).iterdir()),
            "schemes": {g: {k: v["weights"][k] for k in ("num_bits", "group_size", "symmetric", "strategy")}
                        for g, v in groups.items()}}
