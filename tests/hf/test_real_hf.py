"""The transformers round trip on the real default model (SmolLM2-135M-Instruct), one checkpoint per kind."""

import pytest
import torch

import llmpress  # noqa: F401  (registers quant_method "llmpress")
from llmpress import api, checkpoint

KINDS = {
    "rtn3": dict(method="rtn", bits=3, group_size=64),
    "kmeans3": dict(method="kmeans", bits=3, lloyd_steps=5),
    "shiftadd3": dict(method="shiftadd", bits=3, calib_samples=4, calib_seqlen=512),
}


@pytest.fixture(scope="module")
def default():
    return api.load("default")


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_real_model_transformers_round_trip(default, kind, tmp_path):
    from transformers import AutoModelForCausalLM

    r = api.compress(default, copy_model=True, progress=False, out=tmp_path / kind, **KINDS[kind])
    ids = default.tokenizer("The capital of France is Paris, and the capital of Italy is", return_tensors="pt")
    x = ids["input_ids"]

    def logits(model):
        with torch.no_grad():
            return model(x).logits

    expected = logits(r.loaded.model)
    ours = checkpoint.load(tmp_path / kind).model
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / kind)
    theirs.save_pretrained(tmp_path / f"{kind}-hf")
    again_theirs = AutoModelForCausalLM.from_pretrained(tmp_path / f"{kind}-hf")
    again_ours = checkpoint.load(tmp_path / f"{kind}-hf").model
    diffs = {name: float((logits(m) - expected).abs().max())
             for name, m in (("llmpress", ours), ("from_pretrained", theirs),
                             ("save_pretrained->from_pretrained", again_theirs),
                             ("save_pretrained->llmpress", again_ours))}
    print(f"\n{kind}: {x.shape[1]} tokens, bits/weight {r.summary()['bits_per_weight']:.3f}, "
          f"max |logit - in-memory logit|: {diffs}")
    assert all(d == 0.0 for d in diffs.values())
