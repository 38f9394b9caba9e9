import itertools

import pytest
import torch

from llmpress.methods.shiftadd.bcq import bcq, codewords, fit_scales, greedy, group_error, nearest_codes


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
