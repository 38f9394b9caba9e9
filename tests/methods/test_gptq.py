import warnings

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import uniform
from llmpress.methods.gptq import GPTQConfig, quantize
from llmpress.methods.hessian import inverse_cholesky, output_error


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_rtn_on_output_error(layer, bits, act_order):
    w, h = layer
    rtn = uniform.quantize(w, bits, 16)
    gptq = quantize(w, h, GPTQConfig(bits=bits, group_size=16, act_order=act_order))
    assert gptq.spec == rtn.spec and gptq.nbytes == rtn.nbytes
    assert output_error(w, gptq.dequantize(), h) < 0.85 * output_error(w, rtn.dequantize(), h)


def test_identity_hessian_gives_exactly_rtn(layer):
    w, _ = layer
    got = quantize(w, torch.eye(64, dtype=torch.float64), GPTQConfig(bits=3, group_size=16))
    ref = uniform.quantize(w, 3, 16)
    assert torch.equal(got.int_codes(), ref.int_codes()) and torch.equal(got.scale, ref.scale)


def test_ragged_groups_and_codes_in_range(layer):
    w, h = layer
    t = quantize(w, h, GPTQConfig(bits=3, group_size=24, act_order=True))
    assert t.spec.n_groups == 3 and int(t.int_codes().max()) < 8
    assert output_error(w, t.dequantize(), h) < output_error(w, uniform.quantize(w, 3, 24).dequantize(), h)


def test_dead_inputs_get_zero_weight(layer):
    w, h = layer
    h = h.clone()
    h[5, :] = h[:, 5] = 0
    t = quantize(w, h, GPTQConfig(bits=4, group_size=16))
    assert torch.all(t.dequantize()[:, 5] == 0)


def test_not_positive_definite_hessian_warns_naming_the_layer(layer):
    w, _ = layer
    x = torch.randn(16, 64, dtype=torch.float64)  # 16 tokens for 64 inputs: rank 16
    with pytest.warns(UserWarning, match="layer blk.3.fc: .*not positive definite"):
        quantize(w, x.T @ x, GPTQConfig(bits=3), name="blk.3.fc")


def test_inverse_cholesky_factor(layer):
    _, h = layer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inv = inverse_cholesky(h, 0.01)
    damped = h + inv.damping * torch.eye(64, dtype=torch.float64)
    assert torch.allclose(inv.upper.T @ inv.upper, torch.linalg.inv(damped), rtol=1e-6, atol=1e-9)
    assert torch.equal(inv.upper, torch.triu(inv.upper))


@pytest.mark.parametrize("kwargs,match", [({"bits": 1}, "2..8"), ({"bits": 9}, "2..8"), ({"group_size": -1}, "group_size"),
                                          ({"damp": 1.5}, "damp")])
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GPTQConfig(**kwargs)


def test_wrong_hessian_shape_names_the_layer(layer):
    w, _ = layer
    with pytest.raises(ConfigError, match="layer fc1: Hessian has shape"):
        quantize(w, torch.eye(10), GPTQConfig(), name="fc1")


def test_config_json_round_trip():
    c = GPTQConfig(bits=3, act_order=True)
    assert GPTQConfig.from_json(c.to_json()) == c
