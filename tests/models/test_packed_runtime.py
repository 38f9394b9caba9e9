"""A compressed model runs from its packed weights: same greedy tokens as the dense path, no dense copy."""

import pytest
import torch

from llmpress import api
from llmpress.nn import FormatModule

KINDS = [
    ("rtn", {"bits": 3, "group_size": 64}),
    ("kmeans", {"bits": 3, "group_size": 1}),
    ("kmeans", {"bits": 2, "group_size": 0}),
    ("shiftadd", {"bits": 3, "mode": "lat", "row_group": 16, "calib_samples": 4, "calib_seqlen": 48}),
]


def _greedy(model, ids, n=16):
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("method,settings", KINDS, ids=[f"{m}-{s['bits']}" for m, s in KINDS])
def test_packed_and_dense_paths_decode_the_same_tokens(method, settings, tiny_dir, fake_cache):
    model = api.compress(str(tiny_dir), method, progress=False, **settings).loaded.model.eval()
    layers = [m for m in model.modules() if isinstance(m, FormatModule)]
    assert layers and all(m.kernel == "auto" for m in layers)
    ids = torch.randint(1, 300, (1, 8), generator=torch.Generator().manual_seed(0))
    packed_tokens = _greedy(model, ids)
    assert all(m._dense is None for m in layers)  # nothing decoded was kept
    # palette/uniform kernels read the buffers as stored; the ShiftAdd kernel also keeps its scales
    # as float32 (4 bytes each), counted in resident_bytes
    extra = (lambda m: 4 * m.spec.n_scales) if method == "shiftadd" else (lambda m: 0)
    assert all(m.resident_bytes == m.nbytes + extra(m) for m in layers)
    with torch.no_grad():
        x = torch.randint(1, 300, (2, 24), generator=torch.Generator().manual_seed(1))
        packed_logits = model(x).logits
    for m in layers:
        m.kernel = "dense"
    assert _greedy(model, ids) == packed_tokens
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, packed_logits, rtol=1e-4, atol=1e-4)


def test_a_cast_model_keeps_its_packed_tables(tiny_dir):
    model = api.compress(str(tiny_dir), "rtn", progress=False, bits=3, group_size=32).loaded.model
    layer = next(m for m in model.modules() if isinstance(m, FormatModule))
    stored = layer.nbytes
    model.to(torch.bfloat16)
    assert layer.scale.dtype == torch.float16 and layer.nbytes == stored
    y = model(torch.tensor([[1, 2, 3]])).logits
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
