import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.gptq import GPTQConfig
from llmpress.methods.rtn import RTNConfig
from llmpress.methods.shiftadd import ShiftAddConfig
from llmpress.models.calibrated import compress_calibrated
from llmpress.models.compress import compress_model
from llmpress.models.storage import storage_report
from llmpress.nn import CompressedLinear, ShiftAddLinear


def ids(model, n=6, seqlen=40):
    return torch.randint(2, model.config.vocab_size, (n, seqlen), generator=torch.Generator().manual_seed(0))


def logits_error(model, ref_logits, x):
    with torch.no_grad():
        return float((model(x).logits - ref_logits).pow(2).mean())


def test_gptq_model_closer_to_the_original_than_rtn(tiny_model):
    import copy

    x = ids(tiny_model)
    with torch.no_grad():
        ref = tiny_model(x).logits
    rtn = copy.deepcopy(tiny_model)
    compress_model(rtn, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    report = compress_calibrated(tiny_model, "gptq", GPTQConfig(bits=3, group_size=32), x, progress=False)
    assert len(report["layers"]) == 14
    assert all(isinstance(tiny_model.get_submodule(n), CompressedLinear) for n in report["layers"])
    assert logits_error(tiny_model, ref, x) < logits_error(rtn, ref, x)


def test_mixed_precision_stays_within_the_stored_bits_budget(tiny_model):
    x = ids(tiny_model)
    cfg = ShiftAddConfig(bits=2, mode="lat", row_group=16, avg_bits=2.7)
    report = compress_calibrated(tiny_model, "shiftadd", cfg, x, progress=False)
    bits = set(report["allocation"].values())
    assert bits <= {2, 3, 4} and len(bits) > 1
    assert all(isinstance(tiny_model.get_submodule(n), ShiftAddLinear) for n in report["layers"])
    for name, b in report["allocation"].items():
        assert tiny_model.get_submodule(name).spec.bits == b
    rep = storage_report(tiny_model)["groups"]["compressed"]
    assert 8 * rep["bytes"] <= 2.7 * rep["params"]
    rows = report["allocation_rows"]
    assert all(r["err@2"] > r["err@3"] > r["err@4"] > 0 and r["sensitivity"] > 0 for r in rows)


def test_weight_only_entry_point_refuses_calibrated_methods(tiny_model):
    with pytest.raises(ConfigError, match="needs calibration data"):
        compress_model(tiny_model, "gptq", GPTQConfig(), progress=False)
    with pytest.raises(ConfigError, match="weight-only"):
        compress_calibrated(tiny_model, "rtn", RTNConfig(), ids(tiny_model), progress=False)
