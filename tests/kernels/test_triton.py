"""The Triton kernels against the dense product, on a CPU through Triton's interpreter (conftest)."""

import os

import pytest
import torch

from llmpress.formats import bcq
from llmpress.kernels import registry

from tests.kernels.test_lut_matmul import random_bcq
from tests.kernels.test_packed import PALETTE, UNIFORM, _palette, _rel, _uniform

tp = pytest.importorskip("llmpress.kernels.triton_packed", reason="triton is not installed")
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
# float32 sums in another order than the float64 reference (relative error of the whole product)
TOL = 2e-6

BCQ = [bcq.BCQSpec((64, 128), 3, 64, 128, 1), bcq.BCQSpec((48, 96), 2, 8, 8, 2),
       bcq.BCQSpec((30, 40), 4, 5, 20, 1), bcq.BCQSpec((8, 16), 1, 8, 16, 3)]


def _bcq(spec, seed=0):
    return random_bcq(spec, seed)


def _cases():
    return [pytest.param(_uniform, *c, id=f"uniform-{c}") for c in UNIFORM] + \
        [pytest.param(_palette, *c, id=f"palette-{c}") for c in PALETTE] + \
        [pytest.param(lambda shape, bits, spec: _bcq(spec), s.shape, s.bits, s, id=f"bcq-{s}") for s in BCQ]


def _on_device(fmt):
    return type(fmt)(fmt.spec, **{k: v.to(DEVICE) for k, v in fmt.tensors().items()})


@pytest.mark.parametrize("make,shape,bits,group", _cases())
@pytest.mark.parametrize("tokens", [1, 3, 16, 64])
def test_matmul_equals_dense(make, shape, bits, group, tokens):
    w = make(shape, bits, group)
    x = torch.randn(tokens, shape[1], generator=torch.Generator().manual_seed(tokens))
    ref = x.double() @ w.dequantize(torch.float64).T
    y = tp.matmul(x.to(DEVICE), _on_device(w))
    assert y.shape == (tokens, shape[0]) and y.dtype == torch.float32
    assert _rel(y.cpu(), ref) < TOL


@pytest.mark.parametrize("make,shape,bits,group", _cases())
@pytest.mark.parametrize("splits", [2, 3, 1000])
def test_split_columns_add_up_to_the_same_product(make, shape, bits, group, splits):
    w = make(shape, bits, group)
    x = torch.randn(3, shape[1], generator=torch.Generator().manual_seed(1))
    y = tp.matmul(x.to(DEVICE), _on_device(w), splits=splits)
    assert _rel(y.cpu(), x.double() @ w.dequantize(torch.float64).T) < TOL


def test_column_splits_fill_the_processors():
    assert tp.column_splits(row_blocks=36, token_blocks=1, k_blocks=3, processors=132) == 3   # at most one per block
    assert tp.column_splits(row_blocks=36, token_blocks=1, k_blocks=64, processors=132) == 15  # ~4 programs per SM
    assert tp.column_splits(row_blocks=688, token_blocks=1, k_blocks=16, processors=132) == 1  # already full
    assert tp.column_splits(row_blocks=5, token_blocks=1, k_blocks=9, processors=1) == 1


@pytest.mark.parametrize("make,shape,bits,group", _cases())
def test_rows_are_the_dequantized_rows_exactly(make, shape, bits, group):
    w = make(shape, bits, group)
    ids = torch.tensor([0, shape[0] - 1, shape[0] // 2, 0] + list(range(1, min(shape[0], 20))))
    out = tp.rows(_on_device(w), ids.to(DEVICE))
    assert torch.equal(out.cpu(), w.dequantize()[ids])
    with pytest.raises(IndexError):
        tp.rows(_on_device(w), torch.tensor([shape[0]], device=DEVICE))


def test_block_shapes_follow_the_token_count():
    assert tp.blocks(1) == (1, 32, 256, False)
    assert tp.blocks(5)[0] == 8 and not tp.blocks(5)[3]
    for tokens in (1, 2, 7, 15):  # the broadcast product stays within ~8K values per program
        bt, bn, bk, dot = tp.blocks(tokens)
        assert bt >= tokens and bt * bn * bk <= 8192 and not dot
    assert tp.blocks(16)[3] and tp.blocks(512)[0] == 64


def test_bcq_scales_are_expanded_once_and_kept():
    w = _on_device(_bcq(BCQ[0]))
    state = {}
    x = torch.randn(2, 128, device=DEVICE)
    tp.matmul(x, w, state)
    scales = state["scales"]
    tp.matmul(x, w, state)
    assert state["scales"] is scales and torch.equal(scales.cpu(), w.scales().cpu())


def test_zero_tokens_and_refused_layouts():
    w = _uniform((16, 32), 3, 8)
    assert tp.matmul(torch.empty(0, 32), w).shape == (0, 16)
    p = _palette((16, 32), 3, 0)
    vector = type(p)(type(p.spec)((16, 32), 3, 0, 2), p.lut.repeat(1, 1, 2), p.indices)
    assert tp.supports(p) and not tp.supports(vector)  # 2-D palette entries: the torch kernel runs
    assert registry.select(vector, "cuda", "gemv").name == "torch-tiles"


@pytest.mark.parametrize("make,shape,bits,group", [_cases()[0], _cases()[len(UNIFORM)], _cases()[-1]])
def test_the_registry_runs_them_for_cuda_weights(make, shape, bits, group):
    w = make(shape, bits, group)
    names = {r: registry.select(w, "cuda", r).name for r in registry.REGIMES}
    assert names == {"gemv": "triton-registers", "gemm": "triton-tiles", "rows": "triton-rows"}
    x = torch.randn(20, shape[1])
    dev = _on_device(w)
    y = registry.select(w, "cuda", "gemm").run(x.to(DEVICE), dev, {})
    assert _rel(y.cpu(), x.double() @ w.dequantize(torch.float64).T) < TOL
