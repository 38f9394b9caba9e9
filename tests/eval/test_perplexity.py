import math

import pytest
import torch
import torch.nn.functional as F

from llmpress.errors import ConfigError
from llmpress.eval import perplexity, windows_for


def reference(model, ids, seqlen, n):
    nlls = []
    for w in range(n):
        x = ids[w * seqlen:(w + 1) * seqlen]
        with torch.no_grad():
            logp = F.log_softmax(model(x[None]).logits[0].double(), -1)
        nlls += [-logp[t - 1, x[t]].item() for t in range(1, seqlen)]
    return math.exp(sum(nlls) / len(nlls)), len(nlls)


def test_matches_token_by_token_reference(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (5 * 40 + 13,), generator=torch.Generator().manual_seed(0))
    r = perplexity(tiny_model, ids, seqlen=40, max_windows=None, batch_size=2, progress=False)
    ppl, tokens = reference(tiny_model, ids, 40, 5)
    assert r["windows"] == r["total_windows"] == 5 and r["tokens"] == tokens == 5 * 39
    assert r["ppl"] == pytest.approx(ppl, rel=1e-5)
    few = perplexity(tiny_model, ids, seqlen=40, max_windows=2, progress=False)
    assert few["windows"] == 2 and few["tokens"] == 78 and few["ppl"] == pytest.approx(reference(tiny_model, ids, 40, 2)[0], rel=1e-5)


def test_uniform_model_has_perplexity_vocab_size():
    class Uniform(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, use_cache=False):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 50)})()

    r = perplexity(Uniform(), torch.arange(100) % 50, seqlen=10, progress=False)
    assert r["ppl"] == pytest.approx(50.0)


def test_profiles_and_errors(tiny_model):
    assert windows_for("quick") == 32 and windows_for("full") is None
    with pytest.raises(ConfigError, match="profile"):
        windows_for("fast")
    with pytest.raises(ConfigError, match="fewer than one window"):
        perplexity(tiny_model, torch.arange(10), seqlen=20, progress=False)
