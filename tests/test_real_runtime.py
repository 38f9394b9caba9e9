"""On the default model: greedy decoding from packed weights equals the dense path for each weight kind.

Slow tier (``make test-slow``): builds one 3-bit checkpoint per kind (RTN, k-means, ShiftAdd).
"""

import pytest
import torch

from llmpress import api
from llmpress.nn import FormatModule

pytestmark = pytest.mark.slow

KINDS = [("rtn", {"bits": 3, "group_size": 64}), ("kmeans", {"bits": 3, "group_size": 1}),
         ("shiftadd", {"bits": 3, "mode": "lat", "row_group": 32, "terms": 2, "calib_samples": 32,
                       "calib_seqlen": 512})]


@pytest.mark.parametrize("method,settings", KINDS, ids=[m for m, _ in KINDS])
def test_64_greedy_tokens_match_the_dense_path(method, settings):
    loaded = api.compress("default", method, progress=False, **settings).loaded
    model, tok = loaded.model.eval(), loaded.tokenizer
    ids = tok("The history of the city begins", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        packed = model.generate(ids, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        layers = [m for m in model.modules() if isinstance(m, FormatModule)]
        assert all(m._dense is None for m in layers)
        for m in layers:
            m.kernel = "dense"
        dense = model.generate(ids, max_new_tokens=64, min_new_tokens=64, do_sample=False)
    assert torch.equal(packed, dense)
