import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS
from llmpress.formats.bcq import BCQSpec, BCQTensor


def random_tensor(spec: BCQSpec, seed: int = 0) -> tuple[BCQTensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, (rows, cols) = spec.bits, spec.shape
    codes = torch.rand(q, rows, cols, generator=g) < 0.5
    exps = torch.randint(-12, 2, (*spec.scale_shape, spec.terms), generator=g)
    neg = torch.rand(*spec.scale_shape, spec.terms, generator=g) < 0.3
    return BCQTensor.from_codes(codes, exps, neg, spec), codes, exps, neg


@pytest.mark.parametrize("spec", [BCQSpec((6, 16), 1, 1, 8), BCQSpec((12, 24), 3, 4, 1, 2),
                                  BCQSpec((5, 40), 4, 5, 40, 3), BCQSpec((9, 64), 8, 3, 16)])
def test_round_trip_and_dequantize_formula(spec):
    t, codes, exps, neg = random_tensor(spec)
    assert torch.equal(t.codes(), codes.float() * 2 - 1)
    assert torch.equal(t.exponents.long(), exps) and torch.equal(t.negative(), neg)
    # the formula of the module docstring, term by term, element by element
    rows, cols = spec.shape
    w = torch.zeros(rows, cols, dtype=torch.float64)
    for i in range(spec.bits):
        for r in range(rows):
            for c in range(cols):
                a = sum((-1.0 if neg[i, r // spec.row_group, c // spec.col_group, k] else 1.0)
                        * 2.0 ** int(exps[i, r // spec.row_group, c // spec.col_group, k]) for k in range(spec.terms))
                w[r, c] += a * (1.0 if codes[i, r, c] else -1.0)
    assert torch.allclose(t.dequantize().double(), w, rtol=1e-6, atol=1e-9)


def test_planes_hold_one_byte_per_eight_inputs_lsb_first():
    spec = BCQSpec((2, 16), 1, 1, 8)
    codes = torch.zeros(1, 2, 16, dtype=torch.bool)
    codes[0, 0, 0] = codes[0, 0, 3] = codes[0, 1, 15] = True
    t = BCQTensor.from_codes(codes, torch.zeros(1, 2, 2, 1, dtype=torch.long), torch.zeros(1, 2, 2, 1, dtype=torch.bool), spec)
    assert t.planes.tolist() == [[[0b1001, 0], [0, 0b10000000]]]


@pytest.mark.parametrize("spec", [BCQSpec((6, 16), 1, 1, 8), BCQSpec((12, 24), 3, 4, 1, 2), BCQSpec((576, 1536), 3, 32, 8, 2)])
def test_nbytes_is_tensor_bytes_and_spec_bytes(spec):
    t = BCQTensor.empty(spec)
    stored = sum(x.numel() * x.element_size() for x in t.tensors().values())
    assert t.nbytes == stored == spec.nbytes
    n_terms = spec.n_scales * spec.terms
    assert spec.nbytes == spec.bits * spec.numel // 8 + n_terms + (n_terms + 7) // 8


def test_from_meta_rebuilds_the_same_shapes():
    t, *_ = random_tensor(BCQSpec((12, 24), 3, 4, 1, 2))
    empty = FORMATS["bcq"].from_meta(t.meta())
    assert empty.spec == t.spec and t.meta()["binary_codes"] is True
    assert {k: v.shape for k, v in empty.tensors().items()} == {k: v.shape for k, v in t.tensors().items()}


@pytest.mark.parametrize("args,match", [
    (((4, 12), 2, 1, 4), "multiple of 8"),
    (((4, 16), 0, 1, 8), "1..8"),
    (((4, 16), 9, 1, 8), "1..8"),
    (((6, 16), 2, 4, 8), "row group 4 must divide the 6 rows"),
    (((4, 24), 2, 1, 16), "column group 16 must divide the 24 columns"),
])
def test_bad_specs(args, match):
    with pytest.raises(ConfigError, match=match):
        BCQSpec(*args)
