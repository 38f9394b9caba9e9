import pytest
import torch
from torch import nn

from llmpress.errors import ConfigError
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.models.layers import compressible_linears
from llmpress.models.storage import storage_report
from llmpress.nn import CompressedLinear


def test_every_linear_but_lm_head_is_replaced(tiny_model):
    names = [n for n, _ in compressible_linears(tiny_model)]
    assert len(names) == 2 * 7 and "lm_head" not in names
    weights = {n: tiny_model.get_submodule(n).weight.detach().clone() for n in names}
    compress_model(tiny_model, "rtn", RTNConfig(bits=4, group_size=32), progress=False)
    for n in names:
        layer = tiny_model.get_submodule(n)
        assert isinstance(layer, CompressedLinear)
        err = (layer.dequantize() - weights[n]).abs().max()
        assert 0 < err < 0.08
    assert isinstance(tiny_model.lm_head, nn.Linear)
    assert tiny_model.lm_head.weight is tiny_model.model.embed_tokens.weight  # still tied


def test_uncompressed_tensors_are_rounded_to_fp16_values(tiny_model):
    compress_model(tiny_model, "rtn", RTNConfig(bits=4, group_size=32), progress=False)
    emb = tiny_model.model.embed_tokens.weight
    assert emb.dtype == torch.float32 and torch.equal(emb, emb.half().float())


def test_storage_report_is_exact(tiny_model):
    vocab, hidden = tiny_model.model.embed_tokens.weight.shape
    compress_model(tiny_model, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    rep = storage_report(tiny_model)
    expect = sum(m.nbytes for m in tiny_model.modules() if isinstance(m, CompressedLinear))
    assert rep["groups"]["compressed"]["bytes"] == expect
    assert rep["groups"]["embedding"] == {"params": vocab * hidden, "bytes": 2 * vocab * hidden, "bits_per_weight": 16.0}
    assert rep["groups"]["lm_head"]["bytes"] == 0  # tied: stored once, with the embedding
    n_params = sum(p.numel() for p in tiny_model.parameters()) + rep["groups"]["compressed"]["params"]
    assert rep["total_params"] == n_params and rep["fp16_bytes"] == 2 * n_params
    bpw = rep["groups"]["compressed"]["bits_per_weight"]
    assert 3 < bpw < 3 + 19 / 32 + 0.01  # codes + fp16 scale + 3-bit zero per 32 weights (+ ragged groups)


def test_model_without_linear_layers():
    with pytest.raises(ConfigError, match="no nn.Linear"):
        compress_model(nn.Sequential(nn.ReLU()), "rtn", RTNConfig(), progress=False)


def test_nan_weights_are_refused(tiny_model):
    with torch.no_grad():
        tiny_model.model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="up_proj.*NaN"):
        compress_model(tiny_model, "rtn", RTNConfig(), progress=False)


def test_wrong_config_type(tiny_model):
    with pytest.raises(TypeError, match="RTNConfig"):
        compress_model(tiny_model, "rtn", {"bits": 4}, progress=False)
