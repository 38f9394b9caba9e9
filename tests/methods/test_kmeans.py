from dataclasses import replace

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods import get_method
from llmpress.methods.kmeans import KMeansConfig, coordinate_descent, quantize, quantize_weight, refit_tables
from llmpress.methods.rtn import RTNConfig
from llmpress.methods.rtn import quantize_weight as rtn_quantize


def test_config():
    for bad in ({"bits": 0}, {"bits": 9}, {"group_size": -1}, {"init": "random"},
                {"init": "kmeans1d", "cluster_dim": 2}):
        with pytest.raises(ConfigError):
            KMeansConfig(**bad)
    c = KMeansConfig(bits=2, group_size=4)
    assert KMeansConfig.from_json(c.to_json()) == c
    assert get_method("kmeans").config_cls is KMeansConfig


def test_kmeans_beats_a_uniform_grid_with_as_many_levels():
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 0.05
    err = lambda p: float((p.dequantize() - w).pow(2).mean())  # noqa: E731
    for init in ("kmeans++", "kmeans1d"):
        km = quantize_weight(w, KMeansConfig(bits=3, init=init))
        assert km.spec.bits == 3 and km.lut.shape == (1, 8, 1)
        # 8 levels for the whole tensor vs 8 levels per row (RTN with one group per row).
        assert err(km) < err(rtn_quantize(w, RTNConfig(bits=3, group_size=0)))
    exact = err(quantize_weight(w, KMeansConfig(bits=3, init="kmeans1d")))
    assert exact <= err(quantize_weight(w, KMeansConfig(bits=3, init="kmeans++"))) * (1 + 1e-6)


def test_groups_and_vectors():
    w = torch.randn(32, 48, generator=torch.Generator().manual_seed(1))
    per_tensor = quantize_weight(w, KMeansConfig(bits=2))
    grouped = quantize_weight(w, KMeansConfig(bits=2, group_size=8))
    assert grouped.lut.shape == (4, 4, 1)
    assert float((grouped.dequantize() - w).pow(2).mean()) < float((per_tensor.dequantize() - w).pow(2).mean())
    vec = quantize_weight(w, KMeansConfig(bits=4, cluster_dim=2))
    assert vec.lut.shape == (1, 16, 2) and vec.dequantize().shape == w.shape


def test_bad_weights_name_the_layer():
    with pytest.raises(ConfigError, match="q_proj: group_size 5 does not divide"):
        quantize_weight(torch.randn(8, 8), KMeansConfig(group_size=5), name="q_proj")
    w = torch.randn(8, 8)
    w[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN or Inf"):
        quantize_weight(w, KMeansConfig(bits=2))


def test_hessian_weighting_lowers_the_output_error():
    # Inputs with a few loud columns: the output error (W - W^) X weighs those columns most.
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, 64, generator=g) * 0.05
    x = torch.randn(512, 64, generator=g) * torch.where(torch.arange(64) < 4, 20.0, 1.0)
    h = x.T @ x
    out_err = lambda p: float(((p.dequantize() - w) @ x.T).pow(2).sum())  # noqa: E731
    plain = quantize_weight(w, KMeansConfig(bits=2))
    weighted = get_method("kmeans").quantize_calibrated(w, h, KMeansConfig(bits=2, sensitivity="hessian"))
    assert out_err(weighted) < 0.9 * out_err(plain)
    with pytest.raises(ConfigError, match="needs the layer's calibration Hessian"):
        quantize_weight(w, KMeansConfig(bits=2, sensitivity="hessian"))
    with pytest.raises(ConfigError, match="sensitivity"):
        KMeansConfig(sensitivity="fisher")


def test_uniform_importance_is_plain_kmeans():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    for group_size in (0, 1):
        c = KMeansConfig(bits=2, group_size=group_size)
        a = quantize_weight(w, c)
        b = quantize_weight(w, c, importance=torch.full((32,), 3.0))
        assert torch.equal(a.lut, b.lut)


def out_error(palette, w, h):
    d = (palette.dequantize().double() - w.double())
    return float(torch.einsum("ri,ij,rj->", d, h, d))


def test_error_feedback_keeps_the_tables_and_lowers_the_output_error(layer):
    w, h = layer
    quantize = get_method("kmeans").quantize_calibrated
    for group_size in (0, 1, 8):
        c = KMeansConfig(bits=3, group_size=group_size, sensitivity="hessian")
        plain = quantize(w, h, c)
        fed = quantize(w, h, replace(c, error_feedback=True))
        assert torch.equal(fed.lut, plain.lut) and fed.spec == plain.spec
        assert out_error(fed, w, h) < 0.8 * out_error(plain, w, h)


def test_error_feedback_on_uncorrelated_inputs_is_nearest_entry():
    # A diagonal Hessian: one column's error tells nothing about another, so nothing is compensated.
    g = torch.Generator().manual_seed(4)
    w = torch.randn(12, 40, generator=g)
    h = torch.diag(torch.rand(40, generator=g) + 0.5).double()
    c = KMeansConfig(bits=2, group_size=4, sensitivity="hessian")
    fed = get_method("kmeans").quantize_calibrated(w, h, replace(c, error_feedback=True, damp=0))
    assert torch.equal(fed.indices, get_method("kmeans").quantize_calibrated(w, h, c).indices)


def test_error_feedback_config():
    assert KMeansConfig(error_feedback=True).calibrated
    with pytest.raises(ConfigError, match="cluster_dim=1"):
        KMeansConfig(error_feedback=True, cluster_dim=2)
    with pytest.raises(ConfigError, match="damp"):
        KMeansConfig(damp=1.5)
    with pytest.raises(ConfigError, match="needs the layer's calibration Hessian"):
        quantize_weight(torch.randn(8, 8), KMeansConfig(bits=2, error_feedback=True))


def test_refit_is_the_least_squares_tables_for_the_indices():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(6, 24, generator=g)
    x = torch.randn(200, 24, generator=g) * torch.rand(24, generator=g)
    h = (x.T @ x).double()
    for group_size in (1, 3, 0):
        c = KMeansConfig(bits=2, group_size=group_size, sensitivity="hessian", error_feedback=True, damp=0)
        fed = quantize(w, h, c)
        fit = refit_tables(w, h, fed, damp=0)
        assert torch.equal(fit.indices, fed.indices)
        assert out_error(fit, w, h) < out_error(fed, w, h)
        # the same tables by brute force: least squares of L^T (w_r - P_r c) over the rows of a table
        lower = torch.linalg.cholesky(h)
        idx = fed.int_indices().view(6, 24)
        per = group_size or 6
        for t in range(fed.lut.shape[0]):
            rows = range(t * per, (t + 1) * per)
            a = torch.cat([lower.T @ torch.nn.functional.one_hot(idx[r], 4).double() for r in rows])
            y = torch.cat([lower.T @ w[r].double() for r in rows])
            used = torch.nn.functional.one_hot(idx[list(rows)].flatten(), 4).sum(0) > 0
            best = torch.linalg.lstsq(a[:, used], y).solution
            torch.testing.assert_close(fit.lut[t, used, 0].double(), best, atol=2e-3, rtol=1e-3)
            assert torch.equal(fit.lut[t, ~used], fed.lut[t, ~used])  # an unused entry keeps its value


def test_refit_with_uncorrelated_inputs_is_the_weighted_mean():
    g = torch.Generator().manual_seed(6)
    w = torch.randn(4, 30, generator=g)
    d = torch.rand(30, generator=g) + 0.5
    palette = quantize_weight(w, KMeansConfig(bits=2, group_size=1))
    fit = refit_tables(w, torch.diag(d).double(), palette, damp=0)
    idx = palette.int_indices().view(4, 30)
    for r in range(4):
        for k in idx[r].unique().tolist():
            sel = idx[r] == k
            mean = (d[sel] * w[r, sel]).sum() / d[sel].sum()
            assert float(fit.lut[r, k, 0]) == pytest.approx(float(mean), abs=2e-3)


def test_refit_config():
    assert KMeansConfig(refit=True).calibrated
    with pytest.raises(ConfigError, match="cluster_dim=1"):
        KMeansConfig(refit=True, cluster_dim=2)


def correlated_layer(seed, rows=6, cols=24):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(200, cols, generator=g) @ (torch.eye(cols) + 0.3 * torch.randn(cols, cols, generator=g))
    return w, (x.T @ x).double()


def test_coordinate_descent_never_raises_the_error_and_ends_at_a_coordinatewise_minimum():
    w, h = correlated_layer(7)
    for group_size in (1, 3, 0):
        c = KMeansConfig(bits=2, group_size=group_size, sensitivity="hessian", error_feedback=True, damp=0)
        palette = quantize(w, h, c)
        errors = [out_error(palette, w, h)]
        for _ in range(20):
            palette = coordinate_descent(w, h, palette, damp=0, block_size=5)
            errors.append(out_error(palette, w, h))
        assert torch.equal(palette.lut, quantize(w, h, c).lut)
        assert all(b <= a * (1 + 1e-12) for a, b in zip(errors, errors[1:]))
        assert errors[-1] < errors[0]
        # brute force: no single index, moved to any other entry, lowers the error any more
        idx = palette.int_indices().view(6, 24)
        per = group_size or 6
        for r in range(6):
            table = palette.lut[r // per, :, 0]
            for j in range(24):
                for k in range(4):
                    trial = palette.dequantize().double()
                    trial[r, j] = float(table[k])
                    d = trial - w.double()
                    assert float(torch.einsum("ri,ij,rj->", d, h, d)) >= errors[-1] * (1 - 1e-9), (r, j, k, idx[r, j])


def test_coordinate_descent_blocks_only_defer_work():
    w, h = correlated_layer(8, rows=5, cols=40)
    palette = quantize(w, h, KMeansConfig(bits=3, group_size=1, sensitivity="hessian", damp=0.01))
    one = coordinate_descent(w, h, palette, block_size=1)
    assert torch.equal(one.indices, coordinate_descent(w, h, palette, block_size=7).indices)
    assert torch.equal(one.indices, coordinate_descent(w, h, palette, block_size=40).indices)


def test_refine_alternates_with_refit_and_beats_error_feedback():
    w, h = correlated_layer(9, rows=8, cols=32)
    c = KMeansConfig(bits=2, group_size=1, sensitivity="hessian", error_feedback=True, damp=0)
    fed = quantize(w, h, c)
    refined = quantize(w, h, replace(c, refine=2))
    assert torch.equal(refined.lut, fed.lut) and out_error(refined, w, h) < out_error(fed, w, h)
    both = quantize(w, h, replace(c, refine=2, refit=True))
    step = refit_tables(w, h, coordinate_descent(w, h, fed, damp=0), damp=0)
    step = refit_tables(w, h, coordinate_descent(w, h, step, damp=0), damp=0)
    assert torch.equal(both.indices, step.indices) and torch.equal(both.lut, step.lut)
    assert out_error(both, w, h) < out_error(refined, w, h)


def test_refine_config():
    assert KMeansConfig(refine=1).calibrated and not KMeansConfig().calibrated
    with pytest.raises(ConfigError, match="cluster_dim=1"):
        KMeansConfig(refine=1, cluster_dim=2)
    with pytest.raises(ConfigError):
        KMeansConfig(refine=-1)
