"""The native LUT kernel against the dense product on the dequantized weight (and the torch reference)."""

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats.bcq import BCQSpec
from llmpress.kernels import bcq_lut_matmul
from llmpress.kernels import native

from tests.kernels.test_lut_matmul import random_bcq

needs_compiler = pytest.mark.skipif(not native.available(), reason="no C compiler to build the native kernel")


@needs_compiler
@pytest.mark.parametrize("spec", [
    BCQSpec((24, 64), 3, 8, 8, 1),     # lat: one scale per byte
    BCQSpec((24, 64), 2, 4, 32, 2),    # several bytes per scale, APoT
    BCQSpec((24, 64), 3, 8, 1, 2),     # acc: per-column scales
    BCQSpec((16, 48), 4, 16, 2, 3),
    BCQSpec((10, 16), 1, 1, 4, 1),
])
@pytest.mark.parametrize("tokens,threads", [(1, 1), (1, 2), (37, 1), (37, 2)])
def test_native_equals_dense_dequantized_matmul(spec, tokens, threads):
    w = random_bcq(spec)
    x = torch.randn(tokens, spec.shape[1], generator=torch.Generator().manual_seed(1))
    ref = x.double() @ w.dequantize(torch.float64).T
    y = native.bcq_lut_matmul_native(x, w, threads=threads)
    assert y.dtype == torch.float32 and y.shape == (tokens, spec.shape[0])
    assert ((y.double() - ref).norm() / ref.norm()) < 1e-6
    torch_lut = bcq_lut_matmul(x, w)
    assert ((y - torch_lut).norm() / torch_lut.norm()) < 1e-6


@needs_compiler
def test_native_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path))
    native.library.cache_clear()
    try:
        native.library()
        built = list((tmp_path / "kernels").glob("lut_native-*.so"))
        assert len(built) == 1
        native.library.cache_clear()
        native.library()  # loads the cached build
        assert list((tmp_path / "kernels").iterdir()) == built
    finally:
        native.library.cache_clear()


def test_missing_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-llmpress")
    native.library.cache_clear()
    try:
        with pytest.raises(native.KernelUnavailable, match="needs a C compiler"):
            native.library()
    finally:
        native.library.cache_clear()


@needs_compiler
def test_native_refuses_column_groups_that_straddle_bytes():
    w = random_bcq(BCQSpec((4, 24), 2, 1, 12))
    with pytest.raises(ConfigError, match="divides 8 or is a multiple of 8"):
        native.bcq_lut_matmul_native(torch.randn(2, 24), w)


@needs_compiler
@pytest.mark.parametrize("spec", [BCQSpec((24, 64), 3, 8, 8, 2), BCQSpec((24, 64), 3, 8, 1, 2), BCQSpec((16, 48), 2, 4, 2, 1)])
def test_native_dequantize_and_long_inputs(spec):
    w = random_bcq(spec)
    assert torch.equal(native.bcq_dequantize_native(w), w.dequantize())
    for tokens in (native.DENSE_FROM_TOKENS - 1, native.DENSE_FROM_TOKENS + 5):  # look-up, then decoded
        x = torch.randn(tokens, spec.shape[1], generator=torch.Generator().manual_seed(2))
        ref = x.double() @ w.dequantize(torch.float64).T
        assert ((native.bcq_matmul_native(x, w).double() - ref).norm() / ref.norm()) < 1e-6
