"""Compress one linear layer's delta with a named method; report what was chosen and its error."""

from __future__ import annotations

import torch

from llmpress.errors import ConfigError
from llmpress.methods.deltadq import baselines
from llmpress.methods.deltadq.config import BitDeltaConfig, DAREConfig, DeltaDQConfig, MagnitudeConfig, keep_fraction
from llmpress.methods.deltadq.group_dropout import layer_seed
from llmpress.methods.deltadq.group_search import output_error, search_group_size

CONFIGS = {"deltadq": DeltaDQConfig, "dare": DAREConfig, "magnitude": MagnitudeConfig, "bitdelta": BitDeltaConfig}


def config_for(method: str, settings: dict):
    if method not in CONFIGS:
        raise ConfigError(f"unknown delta method {method!r}; available: {sorted(CONFIGS)}")
    cls = CONFIGS[method]
    return cls.from_dict({k: v for k, v in settings.items() if v is not None})


def compress_layer(name: str, delta: torch.Tensor, method: str, config, gram: torch.Tensor | None) -> tuple[object, dict]:
    """(format, report row). ``gram`` = X^T X of the layer's calibration inputs, or None.

    The row has the output error ||X (D - D^)^T||^2 relative to ||X D^T||^2 ("rel_error": 0 is
    exact, 1 is as bad as dropping the delta) and, for DeltaDQ, every candidate's error.
    """
    row: dict = {"name": name, "shape": list(delta.shape)}
    if method == "deltadq":
        best, errors = None, {}
        for k in config.reachable_bits:
            try:
                r = search_group_size(delta, gram, keep_fraction(config.ratio, k), config.group_sizes,
                                      layer_seed(config.seed, name), k, min(config.parts_bits, k), config.unbiased)
            except ConfigError:
                if len(config.reachable_bits) == 1:
                    raise
                continue  # too few entries per group at this width; another width may fit
            errors.update({f"g{g}/k{k}": e / r.reference if r.reference else 0.0 for g, e in r.errors.items()})
            if best is None or r.errors[r.group] < best[0].errors[best[0].group]:
                best = (r, k)
        if best is None:
            raise ConfigError(f"ratio {config.ratio} is unreachable for layer {name} with bits {config.bits} and "
                              f"group sizes {config.group_sizes}; use fewer bits or a smaller ratio")
        r, k = best
        fmt = r.fmt
        row.update(group=r.group, keep=r.keep, bits=k, errors=errors)
    elif method == "dare":
        fmt = baselines.dare(delta, config.ratio, config.bits, layer_seed(config.seed, name))
    elif method == "magnitude":
        fmt = baselines.magnitude(delta, config.ratio, config.bits)
    elif method == "bitdelta":
        fmt = baselines.bitdelta(delta)
    else:
        raise ConfigError(f"unknown delta method {method!r}; available: {sorted(CONFIGS)}")
    reference = output_error(delta, torch.zeros_like(delta), gram)
    err = output_error(delta, fmt.dequantize(), gram)
    row.update(bytes=fmt.nbytes, fp16_bytes=2 * delta.numel(), rel_error=err / reference if reference else 0.0)
    return fmt, row
