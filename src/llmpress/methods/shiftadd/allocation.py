"""Automated bit allocation (ShiftAddLLM, You et al. 2024, Sec. 4.3): which layer gets 2, 3 or 4 bits.

Each layer l and bit width b has a predicted error and a cost in stored bits. The predicted error
is the layer's sensitivity (:func:`llmpress.methods.hessian.sensitivity`) times its measured
relative output error at b bits, so a layer whose error hurts more, or whose weights quantize
worse, is first in line for more bits. The allocation minimises the total predicted error with
the total stored bits (codes and scales, exactly as the format stores them) within
``avg_bits`` x weights.

:func:`solve` is exact: a dynamic programme over the layers that keeps, for the layers seen so
far, every (cost, error) pair not dominated by another (no other pair is cheaper and at least as
good). A dominated partial choice can always be swapped for its dominator without making any
completion worse, so the best complete choice survives. States that cannot be completed within
the budget even at the cheapest choices are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmpress.errors import ConfigError


@dataclass
class LayerOptions:
    """One layer's choices: ``bits[k]`` costs ``cost[k]`` stored bits with predicted error ``error[k]``."""

    name: str
    params: int
    bits: list[int]
    cost: list[int]
    error: list[float]


def solve(costs: list[list[int]], errors: list[list[float]], budget: int) -> list[int]:
    """Index of the chosen option for each layer, minimising sum(errors) with sum(costs) <= budget."""
    if len(costs) != len(errors) or any(len(c) != len(e) or not c for c, e in zip(costs, errors)):
        raise ConfigError("every layer needs the same (non-zero) number of costs and errors")
    cheapest = [min(c) for c in costs]
    rest = np.concatenate([np.cumsum(cheapest[::-1])[::-1], [0]]).astype(np.int64)  # rest[l] = min cost of layers l..
    if rest[0] > budget:
        raise ConfigError(f"the budget of {budget} stored bits is below the cheapest allocation ({int(rest[0])} bits)")
    front_cost = np.zeros(1, dtype=np.int64)
    front_err = np.zeros(1, dtype=np.float64)
    trail: list[tuple[np.ndarray, np.ndarray]] = []
    for layer, (c, e) in enumerate(zip(costs, errors)):
        c = np.asarray(c, dtype=np.int64)
        e = np.asarray(e, dtype=np.float64)
        cand_cost = (front_cost[:, None] + c[None, :]).ravel()
        cand_err = (front_err[:, None] + e[None, :]).ravel()
        parent = np.repeat(np.arange(front_cost.size), c.size)
        choice = np.tile(np.arange(c.size), front_cost.size)
        ok = cand_cost + rest[layer + 1] <= budget
        cand_cost, cand_err, parent, choice = cand_cost[ok], cand_err[ok], parent[ok], choice[ok]
        order = np.lexsort((cand_err, cand_cost))          # by cost, then error
        cand_cost, cand_err, parent, choice = cand_cost[order], cand_err[order], parent[order], choice[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(cand_err)[:-1]])
        keep = cand_err < best_before                        # strictly better than every cheaper state
        front_cost, front_err = cand_cost[keep], cand_err[keep]
        trail.append((parent[keep], choice[keep]))
    state = int(np.argmin(front_err))
    picks = []
    for parent, choice in reversed(trail):
        picks.append(int(choice[state]))
        state = int(parent[state])
    return picks[::-1]


def allocate(layers: list[LayerOptions], avg_bits: float) -> dict[str, int]:
    """{layer name: bits} under ``avg_bits`` stored bits per weight over all ``layers``."""
    budget = int(np.floor(avg_bits * sum(layer.params for layer in layers)))
    try:
        picks = solve([layer.cost for layer in layers], [layer.error for layer in layers], budget)
    except ConfigError as exc:
        low = sum(min(layer.cost) for layer in layers) / sum(layer.params for layer in layers)
        raise ConfigError(f"avg_bits {avg_bits} is too small: {exc}; the cheapest allocation needs "
                          f"{low:.4f} bits per weight") from None
    return {layer.name: layer.bits[k] for layer, k in zip(layers, picks)}
