"""Layer-by-layer calibration: run calibration tokens through a model one decoder layer at a time.

Post-training methods (GPTQ-style error feedback, ShiftAddLLM, DeltaDQ's group-size search) need
the inputs each layer sees. Holding all layers' activations at once is what makes naive
calibration expensive; instead the inputs of the first decoder layer are captured once, and
then, layer after layer, the caller inspects and changes the layer while its inputs are at hand,
and the runner computes the layer's outputs with the *changed* layer to feed the next one (so
layer l is calibrated on the outputs of the already-compressed layers before it).

    for step in layerwise(model, calib_ids):
        grams = step.gram()            # {linear name: X^T X over all calibration tokens}
        ...compress the linears of step.layer...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.errors import ConfigError


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter or buffer lives (inputs are moved there)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass once layer 0's inputs are known."""


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, blocks) of the repeated transformer blocks: the ModuleList holding most parameters."""
    best, best_size = None, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    if best is None:
        raise ConfigError(f"{type(model).__name__} has no list of decoder layers to calibrate layer by layer")
    return best


@dataclass
class LayerStep:
    """One decoder layer with the inputs it receives: ``hidden`` holds one [batch, seq, hidden]
    tensor per calibration batch, ``kwargs`` the matching keyword arguments (masks, positions)."""

    index: int
    name: str
    layer: nn.Module
    hidden: list[torch.Tensor]
    kwargs: list[dict] = field(repr=False)

    @torch.no_grad()
    def run(self) -> list[torch.Tensor]:
        """The layer's outputs for every batch, computed with the layer as it is now."""
        outs = []
        for h, kw in zip(self.hidden, self.kwargs):
            out = self.layer(h, **kw)
            outs.append(out[0] if isinstance(out, tuple) else out)
        return outs

    @torch.no_grad()
    def gram(self, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """{name: X^T X} in float64 for each ``nn.Linear`` of the layer (or those in ``names``), where
        X [tokens, in_features] stacks every calibration token's input to that linear."""
        linears = {n: m for n, m in self.layer.named_modules()
                   if isinstance(m, nn.Linear) and (names is None or n in names)}
        grams = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64, device=m.weight.device)
                 for n, m in linears.items()}

        # q/k/v (and gate/up) read the same tensor: compute its product once per batch. Each
        # entry keeps its input alive, so no other tensor can reuse the address in that batch.
        products: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

        def hook(name):
            def accumulate(module, args):
                x = args[0]
                key = (x.data_ptr(), tuple(x.shape), x.stride())
                if key not in products:
                    flat = x.reshape(-1, x.shape[-1]).to(torch.float64)
                    products[key] = (x, flat.T @ flat)
                grams[name] += products[key][1]
            return accumulate

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
        try:
            for h, kw in zip(self.hidden, self.kwargs):
                products.clear()
                self.layer(h, **kw)
        finally:
            for h in handles:
                h.remove()
        return grams


@torch.no_grad()
def capture_inputs(model: nn.Module, ids: torch.Tensor, batch_size: int = 8,
                   first_layer: nn.Module | None = None) -> tuple[list, list]:
    """Inputs (hidden states and keyword arguments) of the first decoder layer for each batch of ``ids``."""
    first_layer = first_layer if first_layer is not None else decoder_layers(model)[1][0]
    hidden, kwargs = [], []

    def catch(module, args, kw):
        kw = dict(kw)
        h = args[0] if args else kw.pop("hidden_states")
        kw.pop("past_key_values", None)
        kw["use_cache"] = False
        hidden.append(h)
        kwargs.append(kw)
        raise _Captured

    handle = first_layer.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for i in range(0, ids.shape[0], batch_size):
            try:
                model(input_ids=ids[i:i + batch_size].to(model_device(model)), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return hidden, kwargs


def layerwise(model: nn.Module, ids: torch.Tensor, batch_size: int = 8, progress: bool = True) -> Iterator[LayerStep]:
    """Yield each decoder layer with its calibration inputs; after the caller is done with a step,
    its outputs (from the possibly changed layer) become the next layer's inputs.

    ids: [n_samples, seqlen] token ids.
    """
    if ids.dim() != 2 or ids.shape[0] == 0:
        raise ConfigError(f"calibration ids must be [n_samples, seqlen] with n_samples >= 1, got {tuple(ids.shape)}")
    name, layers = decoder_layers(model)
    hidden, kwargs = capture_inputs(model, ids, batch_size, first_layer=layers[0])
    for i, layer in enumerate(tqdm(layers, desc="calibrating", unit="layer", disable=not progress)):
        step = LayerStep(i, f"{name}.{i}" if name else str(i), layer, hidden, kwargs)
        yield step
        hidden = step.run()


@torch.no_grad()
def hessian_diagonals(model: nn.Module, ids: torch.Tensor, names: list[str] | None = None,
                      batch_size: int = 8) -> dict[str, torch.Tensor]:
    """{linear name: diag(X^T X)} [in_features] float32: for every ``nn.Linear`` of ``model`` (or
    those in ``names``), the sum over all calibration tokens of each input feature squared,
    from one forward pass of the model as it is. ids: [n_samples, seqlen] token ids.

    The diagonal of the Hessian of a linear's output error ||X dW^T||^2: how much a squared
    weight error in each input column costs. Unlike :func:`layerwise` nothing is changed between
    layers, so every layer sees the unmodified model's activations.
    """
    if ids.dim() != 2 or ids.shape[0] == 0:
        raise ConfigError(f"calibration ids must be [n_samples, seqlen] with n_samples >= 1, got {tuple(ids.shape)}")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and (names is None or n in names)}
    missing = sorted(set(names or ()) - set(linears))
    if missing:
        raise ConfigError(f"no nn.Linear named {missing[:3]} in {type(model).__name__}")
    sums = {n: torch.zeros(m.in_features, dtype=torch.float64, device=m.weight.device) for n, m in linears.items()}

    def hook(name):
        def accumulate(module, args):
            x = args[0]
            sums[name] += x.reshape(-1, x.shape[-1]).to(torch.float64).pow(2).sum(0)
        return accumulate

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    try:
        for i in range(0, ids.shape[0], batch_size):
            model(input_ids=ids[i:i + batch_size].to(model_device(model)), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: s.float() for n, s in sums.items()}
