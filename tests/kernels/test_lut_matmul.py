import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQSpec, BCQTensor
from llmpress.kernels import bcq_lut_matmul, partial_sum_tables


def random_bcq(spec: BCQSpec, seed: int = 0) -> BCQTensor:
    g = torch.Generator().manual_seed(seed)
    q, (rows, cols) = spec.bits, spec.shape
    codes = torch.rand(q, rows, cols, generator=g) < 0.5
    exps = torch.randint(-9, 1, (*spec.scale_shape, spec.terms), generator=g)
    neg = torch.rand(*spec.scale_shape, spec.terms, generator=g) < 0.3
    return BCQTensor.from_codes(codes, exps, neg, spec)


def test_tables_hold_every_signed_sum():
    x = torch.randn(3, 2, 8, dtype=torch.float64)
    table = partial_sum_tables(x)
    assert table.shape == (3, 2, 256)
    for v in (0, 1, 0b10110010, 255):
        signs = torch.tensor([1.0 if v >> k & 1 else -1.0 for k in range(8)], dtype=torch.float64)
        assert torch.allclose(table[:, :, v], (x * signs).sum(2))


@pytest.mark.parametrize("spec", [
    BCQSpec((24, 64), 3, 8, 8, 1),     # lat: one scale per byte, shifts on the looked-up sums
    BCQSpec((24, 64), 2, 4, 32, 2),    # larger column blocks, APoT
    BCQSpec((24, 64), 3, 8, 1, 2),     # acc: per-column scales, shifts on the activations
    BCQSpec((16, 48), 4, 16, 2, 3),
    BCQSpec((10, 16), 1, 1, 4, 1),
])
def test_lut_equals_dense_dequantized_matmul(spec):
    w = random_bcq(spec)
    x = torch.randn(37, spec.shape[1])
    ref = x.double() @ w.dequantize(torch.float64).T
    y = bcq_lut_matmul(x, w)
    assert y.dtype == torch.float32 and y.shape == (37, spec.shape[0])
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-5


def test_lut_refuses_column_groups_that_straddle_bytes():
    w = random_bcq(BCQSpec((4, 24), 2, 1, 12))
    with pytest.raises(ConfigError, match="divides 8 or is a multiple of 8"):
        bcq_lut_matmul(torch.randn(2, 24), w)
