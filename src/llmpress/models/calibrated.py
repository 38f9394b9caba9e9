"""Apply a calibrated method (GPTQ, ShiftAddLLM) to every linear layer of the decoder, in place.

Layer by layer (:func:`llmpress.models.calibration.layerwise`): the Hessians X^T X of the
layer's linears are collected from its calibration inputs, which come from the already
compressed layers before it, every linear is quantized against its Hessian, and the layer's
outputs with the compressed linears feed the next layer.

With ShiftAdd's ``avg_bits`` a first pass over the unmodified model measures, per linear, the
sensitivity and the output error at each bit choice, and the exact allocation
(:mod:`llmpress.methods.shiftadd.allocation`) picks the bits the second pass then uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQTensor
from llmpress.methods import get_method, needs_calibration
from llmpress.methods.hessian import check_hessian, inverse_cholesky, output_error, sensitivity
from llmpress.methods.shiftadd import ShiftAddConfig, layer_spec, quantize_plain
from llmpress.methods.shiftadd.allocation import LayerOptions, allocate
from llmpress.models.calibration import decoder_layers, layerwise
from llmpress.models.compress import round_uncompressed
from llmpress.models.layers import check_finite, compressible_linears, set_module
from llmpress.nn import CompressedLinear, ShiftAddLinear


@contextlib.contextmanager
def _one_thread():
    """The column loops run thousands of tiny tensor ops; intra-op threads only add
    synchronisation to those (10x slower on a busy 2-core machine), so they run on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _targets(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The compressible linears, all of which must lie inside the decoder layers (they are
    what the layer-by-layer calibration sees)."""
    layers_name, _ = decoder_layers(model)
    linears = compressible_linears(model)
    outside = [n for n, _ in linears if not n.startswith(layers_name + ".")]
    if outside:
        raise ConfigError(f"calibrated methods compress the linears of the decoder layers ({layers_name}); "
                          f"{outside[:3]} lie outside them; use a weight-only method such as rtn")
    return linears


def _check_calibration(linears: list[tuple[str, nn.Linear]], ids: torch.Tensor) -> None:
    tokens = ids.numel()
    name, widest = max(linears, key=lambda item: item[1].in_features)
    if tokens < widest.in_features:
        raise ConfigError(f"{tokens} calibration tokens cannot determine the Hessian of layer {name} "
                          f"({widest.in_features} inputs); use at least {widest.in_features} tokens "
                          "(more samples or a longer seqlen)")


def _local_names(step, wanted: set[str]) -> dict[str, str]:
    """{name inside the decoder layer: full model name} of the wanted linears of this step."""
    return {local: f"{step.name}.{local}" for local, m in step.layer.named_modules()
            if isinstance(m, nn.Linear) and f"{step.name}.{local}" in wanted}


def plan_bits(model: nn.Module, config: ShiftAddConfig, ids: torch.Tensor, batch_size: int = 8,
              progress: bool = True) -> tuple[dict[str, int], list[dict]]:
    """Pass 1 of mixed precision: measure and allocate. Returns ({name: bits}, per-layer rows)."""
    wanted = {n for n, _ in _targets(model)}
    options, rows = [], []
    for step in layerwise(model, ids, batch_size=batch_size, progress=progress):
        names = _local_names(step, wanted)
        grams = step.gram(list(names))
        for local, full in names.items():
            w = step.layer.get_submodule(local).weight.data
            h = check_hessian(grams[local], w.shape[1], full)
            with _one_thread():
                sens = sensitivity(w, inverse_cholesky(h, config.damp, full))
                errs, costs = [], []
                for b in config.choices:
                    fmt = quantize_plain(w, config, bits=b, name=full)
                    errs.append(output_error(w, fmt.dequantize(), h))
                    costs.append(8 * layer_spec(tuple(w.shape), config, b, full).nbytes)
            options.append(LayerOptions(full, w.numel(), list(config.choices), costs, [sens * e for e in errs]))
            rows.append({"layer": full, "sensitivity": sens, **{f"err@{b}": e for b, e in zip(config.choices, errs)}})
    allocation = allocate(options, config.avg_bits)
    for row in rows:
        row["bits"] = allocation[row["layer"]]
    return allocation, rows


def compress_calibrated(model: nn.Module, method: str, config, ids: torch.Tensor, batch_size: int = 8,
                        progress: bool = True) -> dict:
    """Replace each decoder linear by a compressed module; ``ids`` [samples, seqlen] calibration tokens.

    Returns a report: compressed layer names, the bit allocation (mixed precision only), the
    allocation table rows, for ShiftAdd the relative weight error of each layer with float and
    with shift scales (``shift_rounding``), and the seconds each pass took.
    """
    m = get_method(method)
    if not needs_calibration(method, config):
        raise ConfigError(f"{method!r} is a weight-only method here; use models.compress.compress_model")
    if not isinstance(config, m.config_cls):
        raise TypeError(f"method {method!r} takes a {m.config_cls.__name__}, got {type(config).__name__}")
    linears = _targets(model)
    _check_calibration(linears, ids)
    for name, linear in linears:
        check_finite(name, linear.weight)
        if isinstance(config, ShiftAddConfig):  # fail before minutes of calibration, not after
            for b in config.choices if config.avg_bits is not None else (config.bits,):
                layer_spec(tuple(linear.weight.shape), config, b, name)
    report: dict = {"layers": [n for n, _ in linears]}
    allocation: dict[str, int] = {}
    if getattr(config, "avg_bits", None) is not None:
        start = time.perf_counter()
        allocation, rows = plan_bits(model, config, ids, batch_size, progress)
        report.update(allocation=allocation, allocation_rows=rows, plan_seconds=time.perf_counter() - start)
    wanted = {n for n, _ in linears}
    start = time.perf_counter()
    for step in layerwise(model, ids, batch_size=batch_size, progress=progress):
        compress_step(step, wanted, method, config, allocation, report)
    report["quantize_seconds"] = time.perf_counter() - start
    round_uncompressed(model)
    return report


def compress_step(step, wanted: set[str], method: str, config, allocation: dict[str, int], report: dict) -> None:
    """Quantize the ``wanted`` linears of one decoder layer against the Hessians of its calibration
    inputs, replacing them in ``step.layer``; ``allocation`` {name: bits} overrides config.bits."""
    m = get_method(method)
    quantize = m.quantize_calibrated or m.quantize_weight
    names = _local_names(step, wanted)
    grams = step.gram(list(names))
    for local, full in names.items():
        linear = step.layer.get_submodule(local)
        cfg = dataclasses.replace(config, bits=allocation[full]) if full in allocation else config
        extra = {}
        if isinstance(config, ShiftAddConfig):  # how much the power-of-two rounding of scales costs
            extra["report"] = report.setdefault("shift_rounding", {}).setdefault(full, {})
        with _one_thread():
            fmt = quantize(linear.weight.data, grams.pop(local), cfg, full, **extra)
        cls = ShiftAddLinear if isinstance(fmt, BCQTensor) else CompressedLinear
        module = cls(fmt, linear.bias.data if linear.bias is not None else None)
        set_module(step.layer, local, module.to(linear.weight.device))


def rounding_summary(per_layer: dict[str, dict]) -> dict:
    """Mean over layers of the relative weight error with float scales and with shift scales."""
    n = max(1, len(per_layer))
    return {k: sum(r[k] for r in per_layer.values()) / n for k in ("bcq_rel_error", "shift_rel_error")}


def print_allocation(rows: list[dict], choices: tuple[int, ...]) -> str:
    """The allocation as a table, one row per layer."""
    from llmpress.table import format_table

    cols = ["layer", "sensitivity", *[f"err@{b}" for b in choices], "bits"]
    return format_table(rows, cols)
