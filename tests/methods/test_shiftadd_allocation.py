import itertools

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.shiftadd.allocation import LayerOptions, allocate, solve


def brute_force(costs, errors, budget):
    best = None
    for combo in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[k] for c, k in zip(costs, combo))
        err = sum(e[k] for e, k in zip(errors, combo))
        if cost <= budget and (best is None or err < best):
            best = err
    return best


@pytest.mark.parametrize("seed", range(30))
def test_dp_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 7, (1,), generator=g))
    costs = torch.randint(1, 30, (n, 3), generator=g).tolist()
    errors = torch.rand(n, 3, generator=g, dtype=torch.float64).tolist()
    budget = int(torch.randint(sum(min(c) for c in costs), sum(max(c) for c in costs) + 1, (1,), generator=g))
    picks = solve(costs, errors, budget)
    assert sum(c[k] for c, k in zip(costs, picks)) <= budget
    assert sum(e[k] for e, k in zip(errors, picks)) == pytest.approx(brute_force(costs, errors, budget), abs=1e-12)


def test_allocation_spends_bits_where_error_drops_most():
    layers = [LayerOptions("a", 100, [2, 3], [200, 300], [10.0, 1.0]),
              LayerOptions("b", 100, [2, 3], [200, 300], [2.0, 1.5])]
    assert allocate(layers, 2.5) == {"a": 3, "b": 2}
    assert allocate(layers, 3.0) == {"a": 3, "b": 3}
    assert allocate(layers, 2.0) == {"a": 2, "b": 2}


def test_budget_below_the_cheapest_choice():
    layers = [LayerOptions("a", 100, [2, 3], [210, 310], [1.0, 0.5])]
    with pytest.raises(ConfigError, match="avg_bits 2.0 is too small.*2.1000 bits per weight"):
        allocate(layers, 2.0)
