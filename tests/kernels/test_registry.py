"""The kernel registry: one table, every format on every device has a kernel, modules use it."""

import torch

from llmpress.formats import bcq, uniform
from llmpress.kernels import packed, registry
from llmpress.nn import CompressedEmbedding, CompressedLinear

from tests.kernels.test_lut_matmul import random_bcq


def test_every_format_has_a_kernel_on_any_device_and_regime():
    u = uniform.quantize(torch.randn(8, 16), 3, 8)
    b = random_bcq(bcq.BCQSpec((8, 16), 2, 4, 8, 1))
    for fmt in (u, b):
        for regime in registry.REGIMES:
            assert registry.select(fmt, "meta", regime).name.startswith("torch-")  # no native code for it
    if packed.available():
        assert registry.select(u, "cpu", "gemv").name == "native-registers"
        assert registry.select(u, "cpu", "gemm").name == "native-tiles"


def test_a_new_entry_is_one_register_call(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", {k: list(v) for k, v in registry.REGISTRY.items()})
    calls = []

    def run(x, fmt, state):
        calls.append(x.shape)
        return torch.zeros(x.shape[0], fmt.spec.shape[0])

    registry.register("uniform", "cpu", "gemv", registry.Kernel("test-first", run))
    registry.REGISTRY[("uniform", "cpu", "gemv")].insert(0, registry.REGISTRY[("uniform", "cpu", "gemv")].pop())
    layer = CompressedLinear(uniform.quantize(torch.randn(8, 16), 3, 8))
    assert layer.kernel_names()["gemv"] == "test-first"
    assert layer(torch.randn(2, 16)).abs().sum() == 0 and calls == [(2, 16)]


def test_modules_hold_no_dense_copy_and_name_their_kernels():
    w = uniform.quantize(torch.randn(64, 32), 4, 16)
    lin, emb = CompressedLinear(w), CompressedEmbedding(w)
    x, ids = torch.randn(20, 32), torch.tensor([[1, 5, 63]])
    torch.testing.assert_close(lin(x[:3]), x[:3] @ w.dequantize().T)
    torch.testing.assert_close(lin(x), x @ w.dequantize().T)      # the gemm regime
    assert torch.equal(emb(ids), w.dequantize()[ids])
    for m in (lin, emb):
        assert m._dense is None and m.resident_bytes == m.nbytes
    assert set(lin.kernel_names()) == {"gemv", "gemm"} and set(emb.kernel_names()) == {"rows"}
    lin.kernel = "dense"
    lin(x)
    assert lin.resident_bytes == lin.nbytes + 64 * 32 * 4 and lin.kernel_names() == {"gemv": "dense", "gemm": "dense"}


def test_gradient_reaches_the_input_through_a_packed_layer():
    g = torch.Generator().manual_seed(0)
    w = uniform.quantize(torch.randn(24, 32, generator=g), 3, 16)
    layer = CompressedLinear(w)
    x = torch.randn(3, 32, generator=g, requires_grad=True)
    layer(x).square().sum().backward()
    xd = x.detach().clone().requires_grad_(True)
    (xd @ w.dequantize().T).square().sum().backward()
    torch.testing.assert_close(x.grad, xd.grad, rtol=1e-4, atol=1e-4)


def test_without_a_compiler_the_torch_kernels_run_after_one_warning(monkeypatch, tmp_path):
    import warnings

    from llmpress.kernels import build

    monkeypatch.setenv("CC", "no-such-compiler-llmpress")
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path))  # no cached build to fall back on
    caches = (packed.library, packed.available, build.warn_once)
    for c in caches:
        c.cache_clear()
    try:
        w = uniform.quantize(torch.randn(8, 16), 3, 8)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            layers = [CompressedLinear(w) for _ in range(3)]
            assert all(m.kernel_names()["gemv"] == "torch-tiles" for m in layers)
        assert len([x for x in seen if "needs a C compiler" in str(x.message)]) == 1
        x = torch.randn(2, 16)
        torch.testing.assert_close(layers[0](x), x @ w.dequantize().T)
    finally:
        for c in caches:
            c.cache_clear()
