"""DeltaDQ on the real fine-tune (slow; needs the cached arithmetic fine-tune of benchmarks/deltadq.py)."""

import pytest
import torch

from llmpress import api
from llmpress.cache import cache_dir
from llmpress.data.arithmetic import train_eval_split
from llmpress.eval import evaluate_generation
from llmpress.methods.deltadq import DeltaDQConfig
from llmpress.models import delta as dm

FINETUNE = cache_dir() / "finetunes" / "smollm2-arithmetic-generated"


@pytest.mark.slow
@pytest.mark.skipif(not (FINETUNE / "llmpress.json").is_file(), reason="run benchmarks/deltadq.py's fine-tune first")
def test_deltadq_16x_keeps_the_fine_tune_and_serves_over_the_base():
    base, ft = api.load("default"), api.load(FINETUNE)
    ids = dm.calibration_ids(ft.tokenizer, "arithmetic", 8, 256)
    delta = dm.compress(base.model, ft.model, "deltadq", DeltaDQConfig(ratio=16, bits=(1, 2, 4),
                                                                       group_sizes=(16, 64, 256)), ids, progress=False)
    assert delta.accounting()["linear_ratio"] > 15.5
    _, held = train_eval_split()
    held = held[:100]
    em = lambda m: evaluate_generation(m, base.tokenizer, held, max_new_tokens=8, progress=False)["exact_match"]  # noqa: E731
    served = dm.attach(base.model, delta)
    assert em(served) >= em(ft.model) - 0.05 > em(base.model) + 0.2
    x = torch.randint(0, 1000, (1, 32))
    merged = dm.apply(api.load("default").model, delta)
    with torch.no_grad():
        assert torch.allclose(served(x).logits, merged(x).logits, atol=1e-3)
