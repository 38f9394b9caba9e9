import pytest

from llmpress.errors import ConfigError
from llmpress.methods.dkm import DKMConfig, DKMModelConfig


@pytest.mark.parametrize("settings,message", [
    ({"n_bits": 0}, "n_bits must be an integer in 1..8"),
    ({"n_bits": 9}, "n_bits must be an integer in 1..8"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"tau": -1.0}, "tau must be > 0"),
    ({"tau_final": 0.0}, "tau_final must be > 0"),
    ({"max_iter": 0}, "max_iter"),
    ({"epsilon": -1e-3}, "epsilon"),
    ({"group_size": -1}, "group_size"),
    ({"cluster_dim": 0}, "cluster_dim"),
    ({"memory": "fast"}, "memory must be one of"),
    ({"cluster_dim": 2, "memory": "table"}, "cluster_dim > 1"),
    ({"cluster_dim": 2, "init": "kmeans1d"}, "exact 1-D k-means"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        DKMConfig(**settings)


def test_json_round_trip():
    c = DKMModelConfig(linear=DKMConfig(n_bits=2, group_size=64), embedding=None,
                       overrides={"model.layers.0.*": {"n_bits": 4}, "lm_head": None})
    assert DKMModelConfig.from_json(c.to_json()) == c
    assert DKMConfig.from_json(DKMConfig(tau=0.5).to_json()) == DKMConfig(tau=0.5)


def test_per_name_overrides():
    c = DKMModelConfig(linear=DKMConfig(n_bits=3), embedding=DKMConfig(n_bits=8),
                       overrides={"model.layers.0.*": {"n_bits": 4}, "model.layers.0.mlp.down_proj": None,
                                  "model.layers.1.self_attn.q_proj": {"cluster_dim": 2, "memory": "unique"}})
    assert c.for_module("model.layers.5.mlp.up_proj", "linear").n_bits == 3
    assert c.for_module("model.layers.0.self_attn.q_proj", "linear").n_bits == 4
    assert c.for_module("model.layers.0.mlp.down_proj", "linear") is None
    assert c.for_module("model.layers.1.self_attn.q_proj", "linear").cluster_dim == 2
    assert c.for_module("model.embed_tokens", "embedding").n_bits == 8
    assert DKMModelConfig(embedding=None).for_module("model.embed_tokens", "embedding") is None


def test_bad_overrides():
    with pytest.raises(ConfigError, match="unknown DKM setting"):
        DKMModelConfig(overrides={"x": {"bits": 3}})
    with pytest.raises(ConfigError, match="n_bits"):
        DKMModelConfig(overrides={"x": {"n_bits": 12}})
