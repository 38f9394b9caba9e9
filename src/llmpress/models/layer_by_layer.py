"""Post-training compression of a model larger than memory: one decoder layer at a time, read from
its safetensors files on disk.

The model is first built on the ``meta`` device (shapes only, no memory). Only the input
embedding and the rotary tables are made real up front, so that the calibration tokens can be
run up to the first decoder layer. Then each decoder layer in turn is read from disk, its linears
are compressed (against the Hessians of its calibration inputs for calibrated methods, exactly as
:func:`llmpress.models.calibrated.compress_calibrated` does in memory), its outputs become the
next layer's inputs, and the float layer is dropped: only its compressed form stays. Peak memory
is one float32 layer + the compressed model + the embedding + the calibration activations,
instead of the whole float32 model.

The result is the model the in-memory path gives, tensor for tensor (tested to equality), so it is
saved, evaluated and exported like any other.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.errors import ConfigError, ModelSpecError
from llmpress.methods import get_method, needs_calibration
from llmpress.models.calibrated import compress_step
from llmpress.models.calibration import LayerStep, capture_inputs, decoder_layers
from llmpress.models.compress import round_uncompressed
from llmpress.models.layers import check_finite, set_module
from llmpress.nn import CompressedLinear

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


class SafetensorsFolder:
    """The tensors of a Hugging Face folder (one ``model.safetensors`` or shards with an index), read
    one at a time from the memory-mapped files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if (self.folder / INDEX).is_file():
            weight_map = json.loads((self.folder / INDEX).read_text())["weight_map"]
        elif (self.folder / SINGLE).is_file():
            from safetensors import safe_open

            with safe_open(self.folder / SINGLE, "pt") as f:
                weight_map = {name: SINGLE for name in f.keys()}
        else:
            raise ModelSpecError(f"{self.folder} has neither {SINGLE} nor {INDEX}: layer-by-layer compression "
                                 "reads safetensors files (save the model with save_pretrained)")
        self.weight_map: dict[str, str] = weight_map
        self._open: dict[str, object] = {}

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file = self.weight_map.get(name)
        if file is None:
            raise ModelSpecError(f"{self.folder} holds no tensor {name!r}; the files do not match config.json")
        if file not in self._open:
            self._open[file] = safe_open(self.folder / file, "pt")
        return self._open[file].get_tensor(name)

    def close(self) -> None:
        """Unmap the files: pages of a memory-mapped file count as resident while it stays mapped."""
        self._open.clear()

    def load_into(self, module: nn.Module, prefix: str, dtype: torch.dtype) -> nn.Module:
        """Give the meta ``module`` (named ``prefix`` in the model) real CPU tensors read from disk."""
        module.to_empty(device="cpu")
        with torch.no_grad():
            for local, t in [*module.named_parameters(recurse=True), *module.named_buffers(recurse=True)]:
                name = f"{prefix}.{local}" if prefix else local
                if name not in self.weight_map:
                    continue  # a non-persistent buffer: rebuilt by its owner
                src = self.get(name)
                if tuple(src.shape) != tuple(t.shape):
                    raise ModelSpecError(f"{name}: {tuple(src.shape)} on disk, {tuple(t.shape)} in config.json")
                t.copy_(src.to(dtype) if src.is_floating_point() else src)
        return module


def skeleton(folder: Path, dtype: torch.dtype) -> nn.Module:
    """The model of ``folder/config.json`` with every tensor on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def _rebuild_rotary(model: nn.Module) -> None:
    """Rotary tables are computed from the config, never stored: rebuild them on the CPU."""
    for name, module in list(model.named_modules()):
        if type(module).__name__.endswith("RotaryEmbedding"):
            with torch.device("cpu"):
                set_module(model, name, type(module)(config=model.config))


@dataclass
class LayerTiming:
    layer: str
    seconds: float
    rss_mb: float


@dataclass
class LayerByLayerReport:
    """Compressed linears, per decoder layer the seconds it took and the resident memory after it
    (MB), and what the calibrated driver reports (``extra``: ShiftAdd's shift rounding)."""

    layers: list[str] = field(default_factory=list)
    timings: list[LayerTiming] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"layer_seconds": [round(t.seconds, 3) for t in self.timings],
                "rss_mb_after_layer": [round(t.rss_mb, 1) for t in self.timings], **self.extra}


def model_folder(spec: str) -> Path:
    """The safetensors folder of a model spec: ``default`` (its converted folder), a .gguf file
    (converted once into the cache) or a Hugging Face folder."""
    if spec == "default":
        from llmpress.models.default import converted_dir

        return converted_dir()
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from llmpress.models.gguf import converted

        return converted(path)
    if not (path / "config.json").is_file():
        raise ModelSpecError(f"{spec}: layer by layer needs a Hugging Face model folder (config.json and "
                             "safetensors files), 'default' or a .gguf file")
    return path


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def compress_layer_by_layer(folder: str | Path, method: str, config, ids: torch.Tensor | None = None,
                            batch_size: int = 8, dtype: torch.dtype = torch.float32, progress: bool = True,
                            layers: int | None = None) -> tuple[nn.Module, LayerByLayerReport]:
    """Compress the model of a Hugging Face folder reading one decoder layer at a time.

    ``ids`` [samples, seqlen]: calibration tokens (needed by calibrated methods). ``layers``: stop
    after that many decoder layers (to measure a few layers of a large model); the model returned
    then still has meta layers and cannot run. Returns the compressed model and per-layer timings.
    """
    m = get_method(method)
    if not isinstance(config, m.config_cls):
        raise TypeError(f"method {method!r} takes a {m.config_cls.__name__}, got {type(config).__name__}")
    calibrated = needs_calibration(method, config)
    if calibrated and ids is None:
        raise ConfigError(f"{method} needs calibration tokens")
    if getattr(config, "avg_bits", None) is not None:
        raise ConfigError("layer by layer, mixed precision (--avg-bits) is not supported yet: its bit "
                          "allocation needs a first pass over every layer; give --bits")
    folder = Path(folder)
    source = SafetensorsFolder(folder)
    model = skeleton(folder, dtype)
    _rebuild_rotary(model)
    embed = model.get_input_embeddings()
    embed_name = next(n for n, mod in model.named_modules() if mod is embed)
    source.load_into(embed, embed_name, dtype)
    source.close()
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    layers_name, blocks = decoder_layers(model)
    outside = [n for n, mod in model.named_modules() if isinstance(mod, nn.Linear)
               and not n.startswith(layers_name + ".") and mod is not model.get_output_embeddings()]
    if outside:
        raise ConfigError(f"layer by layer compresses the linears of the decoder layers; {outside[:3]} lie outside")
    if calibrated:
        name, widest = max(((n, mod) for n, mod in blocks[0].named_modules() if isinstance(mod, nn.Linear)),
                           key=lambda item: item[1].in_features)
        if ids.numel() < widest.in_features:
            raise ConfigError(f"{ids.numel()} calibration tokens cannot determine the Hessian of {name} "
                              f"({widest.in_features} inputs); use at least {widest.in_features} tokens")
        hidden, kwargs = capture_inputs(model, ids, batch_size, first_layer=blocks[0])
    report = LayerByLayerReport()
    count = len(blocks) if layers is None else min(layers, len(blocks))
    for i in tqdm(range(count), desc=f"{method} layer by layer", unit="layer", disable=not progress):
        start = time.perf_counter()
        prefix = f"{layers_name}.{i}"
        layer = source.load_into(copy.deepcopy(blocks[i]), prefix, dtype)  # the meta one stays in place till done
        source.close()
        linears = [(n, mod) for n, mod in layer.named_modules() if isinstance(mod, nn.Linear)]
        for local, linear in linears:
            check_finite(f"{prefix}.{local}", linear.weight)
        if calibrated:
            step = LayerStep(i, prefix, layer, hidden, kwargs)
            compress_step(step, {f"{prefix}.{n}" for n, _ in linears}, method, config, {}, report.extra)
            hidden = step.run()
        else:
            for local, linear in linears:
                fmt = m.quantize_weight(linear.weight.data, config)
                set_module(layer, local, CompressedLinear(fmt, linear.bias.data if linear.bias is not None else None))
        round_uncompressed(layer)  # after its outputs are computed, as the in-memory path rounds at the end
        blocks[i] = layer
        report.layers += [f"{prefix}.{n}" for n, _ in linears]
        report.timings.append(LayerTiming(prefix, time.perf_counter() - start, _rss_mb()))
    if count < len(blocks):
        return model, report
    _load_rest(model, source, dtype, layers_name)
    source.close()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelSpecError(f"{folder}: no tensors on disk for {left[:3]}")
    round_uncompressed(model)
    return model, report


def _load_rest(model: nn.Module, source: SafetensorsFolder, dtype: torch.dtype, layers_name: str) -> None:
    """Real tensors from disk for every module outside the decoder layers still on meta (the final
    norm, an untied head; a tied head already shares the embedding)."""
    for name, module in model.named_modules():
        if name == layers_name or name.startswith(layers_name + "."):
            continue
        for local, t in list(module.named_parameters(recurse=False)):
            if t.is_meta:
                value = source.get(f"{name}.{local}" if name else local)
                value = value.to(dtype) if value.is_floating_point() else value
                setattr(module, local, nn.Parameter(value, requires_grad=t.requires_grad))
