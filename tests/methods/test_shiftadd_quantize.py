import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import uniform
from llmpress.methods.hessian import inverse_cholesky, output_error, sensitivity
from llmpress.methods.shiftadd import ShiftAddConfig, quantize, quantize_plain


@pytest.mark.parametrize("mode,fit_window", [("lat", 8), ("acc", 8), ("acc", 1)])
@pytest.mark.parametrize("bits", [2, 3])
def test_error_feedback_lowers_output_error(layer, mode, fit_window, bits):
    w, h = layer
    cfg = ShiftAddConfig(bits=bits, mode=mode, row_group=16, terms=2, fit_window=fit_window)
    plain = quantize_plain(w, cfg)
    fed = quantize(w, h, cfg)
    assert fed.spec == plain.spec
    assert output_error(w, fed.dequantize(), h) < 0.9 * output_error(w, plain.dequantize(), h)


@pytest.mark.parametrize("mode,terms", [("lat", 1), ("acc", 2)])
def test_without_hessian_it_is_the_vectorised_weight_objective(layer, mode, terms):
    w, _ = layer
    cfg = ShiftAddConfig(bits=3, mode=mode, row_group=8, terms=terms)
    a, b = quantize(w, None, cfg), quantize_plain(w, cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors().values(), b.tensors().values()))


def test_scale_granularity_of_the_modes(layer):
    w, h = layer
    lat = quantize(w, h, ShiftAddConfig(bits=2, mode="lat", row_group=16))
    acc = quantize(w, h, ShiftAddConfig(bits=2, mode="acc", row_group=0))
    assert lat.spec.scale_shape == (2, 3, 8) and acc.spec.scale_shape == (2, 1, 64)


def test_report_of_the_shift_rounding_error(layer):
    w, h = layer
    reports = {}
    for terms in (1, 3):
        reports[terms] = {}
        quantize(w, h, ShiftAddConfig(bits=3, mode="lat", row_group=16, terms=terms), report=reports[terms])
    for r in reports.values():
        assert 0 < r["bcq_rel_error"] < 0.2
    # one power of two adds error; three terms add almost none
    assert reports[1]["shift_rel_error"] > reports[1]["bcq_rel_error"]
    assert reports[3]["shift_rel_error"] < 1.05 * reports[3]["bcq_rel_error"]


def test_more_planes_less_error(layer):
    w, h = layer
    errs = [output_error(w, quantize(w, h, ShiftAddConfig(bits=b, row_group=16)).dequantize(), h) for b in (1, 2, 3, 4)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.01


def test_rtn_is_not_better_than_shiftadd_at_similar_bits(layer):
    # 3 planes with APoT scales per 16 rows x 1 column vs 3-bit RTN with fp16 scale + zero per 16 columns
    w, h = layer
    sa = quantize(w, h, ShiftAddConfig(bits=3, mode="acc", row_group=16))
    rtn = uniform.quantize(w, 3, 16)
    assert output_error(w, sa.dequantize(), h) < output_error(w, rtn.dequantize(), h)


def test_sensitivity_formula(layer):
    w, h = layer
    inv = inverse_cholesky(h, 0.01)
    d = torch.linalg.cholesky(torch.linalg.inv(h + inv.damping * torch.eye(64, dtype=torch.float64)))
    score = w.double() / torch.diagonal(d)
    assert sensitivity(w, inv) == pytest.approx(float(score.norm() * score.std() ** 2), rel=1e-6)


@pytest.mark.parametrize("cfg,match", [
    ({"row_group": 20}, "layer L: row_group 20 does not divide its 48 output rows"),
])
def test_bad_groups_name_the_layer(layer, cfg, match):
    w, h = layer
    with pytest.raises(ConfigError, match=match):
        quantize(w, h, ShiftAddConfig(**cfg), name="L")


def test_columns_not_a_multiple_of_eight_name_the_layer():
    with pytest.raises(ConfigError, match="layer L: .*20 columns is not a multiple of 8"):
        quantize(torch.randn(8, 20), None, ShiftAddConfig(row_group=8), name="L")


@pytest.mark.parametrize("kwargs,match", [({"bits": 0}, "1..8"), ({"bits": 9}, "1..8"), ({"mode": "fast"}, "mode"),
                                          ({"terms": 0}, "terms"), ({"row_group": -1}, "row_group"),
                                          ({"avg_bits": 1.0}, "avg_bits"),
                                          ({"mode": "lat", "fit_window": 4}, "fit_window")])
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ShiftAddConfig(**kwargs)


def test_config_json_round_trip():
    c = ShiftAddConfig(bits=2, mode="lat", avg_bits=2.2)
    assert ShiftAddConfig.from_json(c.to_json()) == c


@pytest.mark.parametrize("mode", ["acc", "lat"])
def test_act_order_is_the_permuted_layer_stored_in_its_own_order(layer, mode):
    from llmpress.methods.shiftadd.quantize import block_order

    w, h = layer
    cfg = ShiftAddConfig(bits=3, mode=mode, row_group=16, act_order=True)
    cg = cfg.col_group
    blocks = block_order(h, cg)
    order = (blocks.unsqueeze(1) * cg + torch.arange(cg)).reshape(-1)
    energy = torch.diagonal(h).reshape(-1, cg).sum(1)
    assert torch.all(energy[blocks].diff() <= 0)  # loudest inputs first
    ordered = quantize(w, h, cfg)
    permuted = quantize(w[:, order], h[order][:, order], ShiftAddConfig(bits=3, mode=mode, row_group=16, act_order=False))
    assert ordered.spec == permuted.spec
    torch.testing.assert_close(ordered.dequantize()[:, order], permuted.dequantize(), rtol=0, atol=0)
    plain = quantize(w, h, ShiftAddConfig(bits=3, mode=mode, row_group=16, act_order=False))
    assert output_error(w, ordered.dequantize(), h) < output_error(w, plain.dequantize(), h)
