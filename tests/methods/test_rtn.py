import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods import get_method
from llmpress.methods.rtn import RTNConfig, quantize_weight


def test_config_validation():
    for bad in ({"bits": 1}, {"bits": 9}, {"bits": "4"}, {"group_size": -1}):
        with pytest.raises(ConfigError):
            RTNConfig(**bad)


def test_config_json_round_trip():
    c = RTNConfig(bits=3, group_size=64)
    assert RTNConfig.from_json(c.to_json()) == c
    with pytest.raises(ConfigError, match="no setting"):
        RTNConfig.from_dict({"bits": 3, "group": 64})


def test_registry():
    m = get_method("rtn")
    assert m.config_cls is RTNConfig
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("magic")


def test_quantize_weight_matches_config():
    w = torch.randn(12, 80)
    q = quantize_weight(w, RTNConfig(bits=3, group_size=32))
    assert q.spec.bits == 3 and q.spec.group_size == 32 and q.spec.shape == (12, 80)
