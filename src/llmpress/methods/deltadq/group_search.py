"""Choose the group size of group-wise dropout per layer by output error on calibration inputs.

For inputs X [tokens, in] the error of an approximation D^ of the delta D is
||X (D - D^)^T||_F^2 = trace(E G E^T) with E = D - D^ and G = X^T X (the layer's Gram matrix from
:meth:`llmpress.models.calibration.LayerStep.gram`), so the search needs G, not the tokens.
Without calibration inputs G is the identity (plain weight error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError
from llmpress.formats.sparse_delta import SparseDeltaTensor
from llmpress.methods.deltadq.group_dropout import group_dropout, keep_for


def output_error(delta: torch.Tensor, approx: torch.Tensor, gram: torch.Tensor | None) -> float:
    """||X (delta - approx)^T||_F^2 summed over the calibration tokens (or ||E||_F^2 without ``gram``)."""
    e = (delta.to(torch.float32) - approx.to(torch.float32))
    if gram is None:
        return float((e * e).sum())
    return float(((e @ gram.to(torch.float32)) * e).sum())


@dataclass
class SearchResult:
    fmt: SparseDeltaTensor
    group: int
    keep: int
    errors: dict[int, float]          # candidate group size -> output error
    reference: float                  # ||X D^T||^2: the error of dropping the whole delta


def search_group_size(delta: torch.Tensor, gram: torch.Tensor | None, fraction: float, candidates: tuple[int, ...],
                      seed: int, bits: int, parts_bits: int, unbiased: bool = False) -> SearchResult:
    """Compress ``delta`` with every candidate group size that keeps >= 1 entry per group; keep the best."""
    cols = delta.shape[1]
    usable = [g for g in candidates if g <= cols and keep_for(g, fraction) >= 1]
    if fraction >= 1:
        usable = usable[:1]  # nothing is dropped: every group size gives the same matrix
    if not usable:
        raise ConfigError(f"keep fraction {fraction:.4f} rounds to 0 kept entries in every candidate group size "
                          f"{candidates} (row width {cols}): the ratio is unreachable; use fewer bits, a smaller "
                          "ratio or larger group sizes")
    best, errors = None, {}
    for g in usable:
        fmt = group_dropout(delta, g, keep_for(g, fraction), seed, bits, parts_bits, unbiased)
        err = output_error(delta, fmt.dequantize(), gram)
        errors[g] = err
        if best is None or err < errors[best[1]]:
            best = (fmt, g)
    zero = output_error(delta, torch.zeros_like(delta), gram)
    return SearchResult(best[0], best[1], keep_for(best[1], fraction), errors, zero)
