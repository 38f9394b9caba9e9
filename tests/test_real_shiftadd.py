"""GPTQ and ShiftAddLLM on the real default model (``slow``: tens of minutes on 2 cores).

The orderings asserted here are the ones benchmarks/baseline.py measures (BENCHMARKS.md).
"""

import pytest
import torch

from llmpress import api
from llmpress.nn.shiftadd_linear import set_kernel

CALIB = {"calib_samples": 32, "calib_seqlen": 512}


@pytest.fixture(scope="module")
def default():
    return api.load("default")


def ppl(lm) -> float:
    return api.evaluate(lm, profile="demo", progress=False)["perplexity"]["ppl"]


@pytest.mark.slow
def test_gptq_beats_rtn_at_3_bits(default):
    rtn = api.compress(default, "rtn", bits=3, group_size=64, copy_model=True, progress=False)
    gptq = api.compress(default, "gptq", bits=3, group_size=64, copy_model=True, progress=False, **CALIB)
    assert gptq.summary()["bits_per_weight"] == rtn.summary()["bits_per_weight"]
    assert ppl(gptq.loaded) < ppl(rtn.loaded)


@pytest.mark.slow
def test_shiftadd_acc_beats_gptq_at_2_bits(default):
    gptq = api.compress(default, "gptq", bits=2, group_size=64, copy_model=True, progress=False, **CALIB)
    sa = api.compress(default, "shiftadd", bits=2, mode="acc", row_group=192, copy_model=True, progress=False,
                      **CALIB)
    assert sa.summary()["bits_per_weight"] < gptq.summary()["bits_per_weight"]
    assert ppl(sa.loaded) < ppl(gptq.loaded)


@pytest.mark.slow
def test_lut_kernel_computes_the_same_model(default):
    sa = api.compress(default, "shiftadd", bits=3, mode="lat", row_group=32, copy_model=True, progress=False,
                      calib_samples=4, calib_seqlen=512)
    x = torch.randint(0, default.model.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dense = sa.loaded.model(x).logits
        assert set_kernel(sa.loaded.model, "lut") == 210
        lut = sa.loaded.model(x).logits
    assert (lut - dense).norm() / dense.norm() < 1e-4
