"""The real default model (SmolLM2-135M-Instruct) on the real wiki corpus (DESIGN.md protocol).

``smoke`` runs in CI (a minute or two once model and data are cached); ``slow`` holds the
longer protocol checks (`make test-slow`).
"""

import pytest
import torch

from llmpress import api

# DESIGN.md: plain transformers on the fp32 conversion gives 19.455 on the quick profile
# (benchmarks/reference_ppl.py measures it again: results/reference_ppl.json).
REFERENCE_QUICK_PPL = 19.455


@pytest.fixture(scope="module")
def default():
    return api.load("default")


@pytest.mark.smoke
def test_smoke_load_ppl_rtn_save_load(default, tmp_path):
    cfg = default.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.tie_word_embeddings) == (30, 576, True)
    p = api.evaluate(default, windows=2, progress=False)["perplexity"]
    assert p["corpus_tokens"] == 91_701 and p["tokens"] == 2 * 2047 and p["total_windows"] == 44
    assert 10 < p["ppl"] < 30
    r = api.compress(default, "rtn", bits=4, group_size=128, copy_model=True, progress=False,
                     out=tmp_path / "rtn4")
    assert 4.1 < r.summary()["bits_per_weight"] < 4.2
    loaded = api.load(tmp_path / "rtn4")
    x = torch.randint(0, cfg.vocab_size, (1, 96), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(x).logits, r.loaded.model(x).logits)
    q = api.evaluate(loaded, windows=2, progress=False)["perplexity"]
    assert p["ppl"] < q["ppl"] < 2 * p["ppl"]


@pytest.mark.slow
def test_quick_profile_reproduces_reference(default):
    p = api.evaluate(default, profile="quick", progress=False)["perplexity"]
    assert (p["windows"], p["tokens"]) == (32, 65_504)
    assert abs(p["ppl"] - REFERENCE_QUICK_PPL) < 0.05


@pytest.mark.slow
def test_rtn_degrades_gracefully_with_bits(default):
    base = api.evaluate(default, profile="quick", progress=False)["perplexity"]["ppl"]
    ppl = {}
    for bits in (8, 4, 3):
        r = api.compress(default, "rtn", bits=bits, group_size=128, copy_model=True, progress=False)
        ppl[bits] = api.evaluate(r.loaded, profile="quick", progress=False)["perplexity"]["ppl"]
    assert ppl[8] < base * 1.01
    # The source is Q4_1 (blocks of 32): re-rounding it onto a g128 integer grid costs ~30%,
    # more than the 10% the foundation issue hoped for (see BENCHMARKS.md).
    assert ppl[4] < base * 1.4
    assert ppl[4] < ppl[3]


def _same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.smoke
def test_layer_by_layer_rtn_is_the_in_memory_rtn():
    a = api.compress("default", "rtn", bits=3, group_size=64, progress=False)
    b = api.compress("default", "rtn", bits=3, group_size=64, layer_by_layer=True, progress=False)
    _same_state(a.loaded.model, b.loaded.model)
    assert len(b.extra["layer_by_layer"]["layer_seconds"]) == 30


@pytest.mark.slow
def test_layer_by_layer_gptq_is_the_in_memory_gptq():
    calib = {"calib_samples": 4, "calib_seqlen": 512}
    a = api.compress("default", "gptq", bits=3, group_size=128, progress=False, **calib)
    b = api.compress("default", "gptq", bits=3, group_size=128, layer_by_layer=True, progress=False, **calib)
    _same_state(a.loaded.model, b.loaded.model)
