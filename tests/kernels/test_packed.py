"""The packed palette/uniform kernels against the dense product on the dequantized weight."""

import pytest
import torch

from llmpress.formats import bitpack, palette, uniform
from llmpress.kernels import packed, tiled

needs_compiler = pytest.mark.skipif(not packed.available(), reason="no C compiler to build the native kernel")
# float32 sums in another order than the float64 reference: relative error of the whole product
TOL = 2e-6

UNIFORM = [((64, 128), 3, 64), ((576, 576), 3, 64), ((37, 100), 3, 32), ((64, 96), 3, 40),   # ragged last group
           ((32, 128), 4, 0), ((32, 128), 2, 16), ((16, 64), 8, 32), ((30, 48), 5, 16), ((5, 7), 3, 3),
           ((48, 160), 3, 48)]
PALETTE = [((64, 128), 3, 1), ((64, 128), 3, 0), ((48, 96), 4, 16), ((64, 128), 2, 8), ((64, 128), 8, 0),
           ((30, 40), 3, 2), ((32, 64), 5, 0), ((9, 13), 2, 3)]


def _uniform(shape, bits, group, seed=0):
    g = torch.Generator().manual_seed(seed)
    return uniform.quantize(torch.randn(*shape, generator=g), bits, group)


def _palette(shape, bits, group, seed=0):
    g = torch.Generator().manual_seed(seed)
    tables = shape[0] // group if group else 1
    return palette.palettize(torch.randn(*shape, generator=g), torch.randn(tables, 1 << bits, 1, generator=g), group)


def _cases():
    return [pytest.param(_uniform, *c, id=f"uniform-{c}") for c in UNIFORM] + \
        [pytest.param(_palette, *c, id=f"palette-{c}") for c in PALETTE]


def _rel(y, ref):
    return float((y.double() - ref).norm() / ref.norm())


@needs_compiler
@pytest.mark.parametrize("make,shape,bits,group", _cases())
@pytest.mark.parametrize("tokens", [1, 2, 5, 16, 64])
def test_gemv_and_gemm_equal_dense(make, shape, bits, group, tokens):
    w = make(shape, bits, group)
    x = torch.randn(tokens, shape[1], generator=torch.Generator().manual_seed(tokens))
    ref = x.double() @ w.dequantize(torch.float64).T
    for portable in (False, True):
        y = packed.gemv(x, w, portable=portable)
        assert y.shape == (tokens, shape[0]) and _rel(y, ref) < TOL, portable
    assert _rel(packed.gemm(x, w), ref) < TOL
    assert _rel(tiled.matmul(x, w), ref) < TOL


@needs_compiler
@pytest.mark.parametrize("make,shape,bits,group", _cases())
def test_rows_are_the_dequantized_rows_exactly(make, shape, bits, group):
    w = make(shape, bits, group)
    dense = w.dequantize()
    ids = torch.tensor([0, shape[0] - 1, shape[0] // 2, 0])
    for portable in (False, True):
        assert torch.equal(packed.rows(w, ids, portable=portable), dense[ids])
    assert torch.equal(tiled.rows(w, ids), dense[ids])
    with pytest.raises(IndexError):
        packed.rows(w, torch.tensor([shape[0]]))


@needs_compiler
def test_vector_path_runs_where_it_should():
    assert packed.path(_uniform((64, 128), 3, 64)) == "avx512" or not _has_avx512()
    assert packed.path(_uniform((37, 100), 3, 32)) == "portable"  # 100 columns: rows are not 16-aligned
    assert packed.path(_palette((32, 64), 5, 0)) == "portable"


def _has_avx512() -> bool:
    from llmpress.kernels.build import cpu_key

    return " avx512f" in cpu_key()


def test_supports_refuses_what_the_c_view_cannot_read():
    w = _palette((8, 16), 3, 0)
    assert packed.supports(w)
    w32 = palette.PaletteTensor(w.spec, w.lut.float(), w.indices)  # a model cast to float32 wholesale
    assert not packed.supports(w32)
    clustered = palette.palettize(torch.randn(8, 16), torch.randn(1, 8, 2))  # vector entries
    assert not packed.supports(clustered)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_unpack_range_reads_any_slice(bits):
    values = torch.randint(0, 1 << bits, (101,), dtype=torch.uint8, generator=torch.Generator().manual_seed(bits))
    stream = bitpack.pack(values, bits)
    for start, n in [(0, 101), (3, 17), (50, 0), (99, 2)]:
        assert torch.equal(bitpack.unpack_range(stream, bits, start, n), values[start:start + n])
