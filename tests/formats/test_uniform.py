import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS, uniform


def per_column(t, group, cols):
    return t.float().repeat_interleave(group, dim=1)[:, :cols]


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("shape,group", [((16, 128), 32), ((9, 100), 32), ((5, 576), 128), ((7, 33), 0),
                                         ((3, 10), 64)])
def test_error_within_half_a_step(bits, shape, group):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(bits)) * 0.05
    w[0, 0] = 0.3  # an outlier widens its group
    q = uniform.quantize(w, bits, group)
    err = (q.dequantize() - w).abs()
    bound = per_column(q.scale, q.spec.group, shape[1]) / 2
    assert (err <= bound * (1 + 1e-5) + 1e-12).all()
    assert int(q.int_codes().max()) < 1 << bits
    assert q.scale.dtype == torch.float16 and q.scale.shape == (shape[0], q.spec.n_groups)


def test_ragged_last_group_shapes():
    q = uniform.quantize(torch.randn(4, 576), 4, 128)
    assert q.spec.n_groups == 5 and q.spec.group == 128
    assert q.dequantize().shape == (4, 576)


def test_exact_on_grid_values():
    s = 0.125  # exactly representable in fp16
    codes = torch.randint(0, 16, (6, 64), generator=torch.Generator().manual_seed(0))
    codes[:, 0], codes[:, 1] = 0, 15  # pin the range of every group
    w = (codes.float() - 5) * s
    q = uniform.quantize(w, 4, 64)
    assert torch.equal(q.dequantize(), w)


def test_error_shrinks_with_bits():
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    errs = [(uniform.quantize(w, b, 64).dequantize() - w).pow(2).mean().item() for b in range(2, 9)]
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_constant_and_zero_rows():
    w = torch.zeros(3, 16)
    w[1] = 0.5
    w[2] = -0.25
    q = uniform.quantize(w, 3, 8)
    assert torch.allclose(q.dequantize(), w, atol=1e-3)


def test_storage_counts_every_byte():
    q = uniform.quantize(torch.randn(10, 100), 3, 32)  # 4 groups per row, the last ragged
    assert q.nbytes == (1000 * 3 + 7) // 8 + 10 * 4 * 2 + (40 * 3 + 7) // 8


def test_meta_round_trip_through_registry():
    q = uniform.quantize(torch.randn(8, 40), 5, 16)
    empty = FORMATS[q.meta()["format"]].from_meta(q.meta())
    assert empty.spec == q.spec
    assert {k: (v.shape, v.dtype) for k, v in empty.tensors().items()} == \
           {k: (v.shape, v.dtype) for k, v in q.tensors().items()}
    filled = type(q)(empty.spec, **q.tensors())
    assert torch.equal(filled.dequantize(), q.dequantize())


def test_bad_inputs():
    with pytest.raises(ConfigError, match="NaN"):
        uniform.quantize(torch.tensor([[float("nan"), 1.0]]), 4, 0)
    with pytest.raises(ConfigError, match="2-D"):
        uniform.quantize(torch.randn(3), 4, 0)
    with pytest.raises(ConfigError, match="bits"):
        uniform.quantize(torch.randn(3, 3), 1, 0)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("group", [32, 0, 40])
def test_symmetric_grid_fixes_every_zero_and_clips_nothing(bits, group):
    g = torch.Generator().manual_seed(bits + group)
    w = torch.randn(12, 96, generator=g) * 0.1
    w[3] = 0  # an all-zero group keeps a finite scale
    q = uniform.quantize(w, bits, group, symmetric=True)
    assert torch.all(q.int_zeros() == 1 << (bits - 1))
    step = q.scale.float().repeat_interleave(q.spec.group, dim=1)[:, :96]
    assert torch.all((q.dequantize() - w).abs() <= step / 2 + 1e-7)
    codes = q.int_codes().long()
    assert codes.min() >= 1  # the most negative level is never used: the grid is symmetric about 0
    asym = uniform.quantize(w, bits, group)
    assert not torch.all(asym.int_zeros() == 1 << (bits - 1))
