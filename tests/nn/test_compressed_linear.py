import torch
import torch.nn.functional as F

from llmpress.formats import uniform
from llmpress.nn import CompressedLinear


def make(bias=True):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g)
    b = torch.randn(24, generator=g) if bias else None
    return CompressedLinear(uniform.quantize(w, 4, 16), b), b


def test_forward_equals_dequantized_dense_matmul():
    layer, b = make()
    for shape in [(40,), (3, 40), (2, 5, 40)]:
        x = torch.randn(shape)
        torch.testing.assert_close(layer(x), F.linear(x, layer.dequantize(), b), rtol=1e-5, atol=1e-5)
    assert layer(torch.randn(2, 40)).shape == (2, 24)
    layer.kernel = "dense"  # the explicit dense path is the dense product itself
    x = torch.randn(3, 40)
    assert torch.equal(layer(x), F.linear(x, layer.dequantize(), b))


def test_no_bias_and_dtype_follows_input():
    layer, _ = make(bias=False)
    x = torch.randn(4, 40, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    # computed in float32 from the packed weight, rounded once to the input's dtype
    assert torch.equal(y, F.linear(x.float(), layer.dequantize()).to(torch.bfloat16))


def test_state_dict_round_trip_into_empty_module_and_cache_invalidation():
    layer, _ = make()
    x = torch.randn(3, 40)
    empty = CompressedLinear.from_meta(layer.meta())
    _ = empty(x)  # fills the cache with the placeholder weight
    empty.load_state_dict(layer.state_dict())
    assert torch.equal(empty(x), layer(x))


def test_nbytes_is_format_bytes():
    layer, _ = make()
    assert layer.nbytes == layer.packed().nbytes == sum(t.numel() * t.element_size() for t in layer.buffers())
