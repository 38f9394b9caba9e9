import itertools

import pytest
import torch

from llmpress.methods.shiftadd.bcq import (UNIFORM_CLIPS, bcq, code_levels, codewords, fit_scales, greedy, group_error,
                                           nearest_codes, refine, uniform_start)


def data(n=40, g=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, g, generator=gen, dtype=torch.float64) * torch.rand(n, 1, generator=gen, dtype=torch.float64)


def test_codewords_enumerate_every_sign_pattern():
    w = codewords(3)
    assert w.shape == (8, 3) and len({tuple(r.tolist()) for r in w}) == 8 and w.abs().eq(1).all()


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_greedy_is_the_residual_recursion(q):
    x = data()
    alpha, codes = greedy(x, q)
    residual = x.clone()
    for i in range(q):
        assert torch.equal(codes[:, i], torch.where(residual >= 0, 1.0, -1.0).double())
        assert torch.allclose(alpha[:, i], residual.abs().mean(1))
        residual -= alpha[:, i:i + 1] * codes[:, i]


@pytest.mark.parametrize("q", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refinement_never_increases_error_and_usually_lowers_it(q, seed):
    x = data(seed=seed)
    g_err = group_error(x, *greedy(x, q))
    r_err = group_error(x, *bcq(x, q, rounds=10))
    assert (r_err <= g_err + 1e-12).all()
    if q > 1:
        assert r_err.sum() < 0.97 * g_err.sum()


def test_scale_step_is_least_squares():
    x = data()
    _, codes = greedy(x, 3)
    alpha = fit_scales(x, codes)
    ref = torch.linalg.lstsq(codes.transpose(1, 2), x.unsqueeze(2)).solution.squeeze(2)
    assert torch.allclose(alpha, ref, atol=1e-10)


def test_scale_step_handles_repeated_planes():
    x = data(n=3)
    codes = torch.ones(3, 2, 24, dtype=torch.float64)  # identical planes: B B^T is singular
    alpha = fit_scales(x, codes)
    assert torch.isfinite(alpha).all()
    assert torch.allclose(alpha.sum(1), x.mean(1))


def test_code_step_is_exhaustive_search():
    x = data(n=5, g=6)
    alpha = torch.rand(5, 3, dtype=torch.float64)
    codes = nearest_codes(x, alpha)
    for n, j in itertools.product(range(5), range(6)):
        best = min(abs(float(x[n, j] - (alpha[n] * w).sum())) for w in codewords(3))
        assert abs(float(x[n, j] - (alpha[n] * codes[n, :, j]).sum())) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_uniform_start_is_the_best_symmetric_uniform_grid(q):
    x = data()
    alpha, codes = uniform_start(x, q)
    levels = code_levels(alpha, codewords(q)).sort(dim=1).values
    steps = levels.diff(dim=1)
    # the 2^q levels are equally spaced and symmetric: the odd multiples of s
    assert torch.allclose(steps, steps[:, :1].expand_as(steps)) and torch.allclose(levels.sum(1), torch.zeros(40, dtype=x.dtype), atol=1e-12)
    err = group_error(x, alpha, codes)
    top = x.abs().amax(1)
    for clip in UNIFORM_CLIPS:  # no tried clipping of a plain uniform grid does better
        s = clip * top / ((1 << q) - 1)
        grid = s.unsqueeze(1) * torch.arange(-(1 << q) + 1, 1 << q, 2, dtype=x.dtype)
        plain = (x.unsqueeze(2) - grid.unsqueeze(1)).abs().min(2).values.pow(2).sum(1)
        assert (err <= plain + 1e-12).all()


def test_bcq_keeps_the_better_of_both_starts():
    # Gaussian groups with two outliers each, like weight columns that meet a loud input: the
    # greedy start spends its first scale on the mean |x| and refinement stays near that minimum
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(64, 190, generator=gen, dtype=torch.float64), torch.full((64, 2), 6.0, dtype=torch.float64)], 1)
    got = group_error(x, *bcq(x, 3, rounds=5))
    from_greedy = refine(x, *greedy(x, 3), 5)[2]
    from_uniform = refine(x, *uniform_start(x, 3), 5)[2]
    assert torch.allclose(got, torch.minimum(from_greedy, from_uniform))
    assert got.sum() < 0.8 * from_greedy.sum()


def test_weighted_scale_step_is_weighted_least_squares():
    x = data()
    _, codes = greedy(x, 3)
    v = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.1
    alpha = fit_scales(x, codes, v)
    root = v.sqrt()
    ref = torch.linalg.lstsq((codes * root.unsqueeze(1)).transpose(1, 2), (x * root).unsqueeze(2)).solution.squeeze(2)
    assert torch.allclose(alpha, ref, atol=1e-10)


def test_uniform_weights_change_nothing_and_uneven_weights_move_the_fit():
    x = data()
    plain = bcq(x, 3, rounds=5)
    same = bcq(x, 3, rounds=5, weight=torch.full_like(x, 2.5))
    assert all(torch.allclose(a, b) for a, b in zip(plain, same))
    # a few values 100x as costly: the weighted fit spends its levels on them
    v = torch.ones_like(x)
    v[:, :4] = 100.0
    weighted = bcq(x, 3, rounds=5, weight=v)
    assert group_error(x, *weighted, v).sum() < group_error(x, *plain, v).sum()
    assert group_error(x, *weighted).sum() > group_error(x, *plain).sum()
