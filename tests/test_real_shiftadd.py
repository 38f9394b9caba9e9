"""GPTQ and ShiftAddLLM on the real default model (``slow``: minutes on 2 cores)."""

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
def test_gptq_and_shiftadd_beat_rtn_at_3_bits(default):
    rtn = api.compress(default, "rtn", bits=3, group_size=64, copy_model=True, progress=False)
    gptq = api.compress(default, "gptq", bits=3, group_size=64, copy_model=True, progress=False, **CALIB)
    sa = api.compress(default, "shiftadd", bits=3, mode="lat", row_group=32, copy_model=True, progress=False, **CALIB)
    assert sa.summary()["bits_per_weight"] < rtn.summary()["bits_per_weight"]
    p_rtn, p_gptq, p_sa = ppl(rtn.loaded), ppl(gptq.loaded), ppl(sa.loaded)
    assert p_gptq < p_rtn and p_sa < p_rtn
    # the multiplication-free kernel computes the same model
    x = torch.randint(0, default.model.config.vocab_size, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        dense = sa.loaded.model(x).logits
        set_kernel(sa.loaded.model, "lut")
        lut = sa.loaded.model(x).logits
    assert (lut - dense).norm() / dense.norm() < 1e-4
