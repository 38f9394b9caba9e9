import pytest
import torch
import torch.nn.functional as F

from llmpress.errors import ConfigError
from llmpress.methods.shiftadd import ShiftAddConfig, quantize_plain
from llmpress.nn import MODULES, ShiftAddLinear
from llmpress.nn.shiftadd_linear import set_kernel

from tests.kernels.test_native import needs_compiler


def make(mode="lat", bias=True):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 40, generator=g) * 0.1
    b = torch.randn(24, generator=g) if bias else None
    fmt = quantize_plain(w, ShiftAddConfig(bits=3, mode=mode, row_group=8))
    return ShiftAddLinear(fmt, b, kernel="lut"), b


@pytest.mark.parametrize("mode", ["lat", "acc"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel", ["lut", pytest.param("native", marks=needs_compiler)])
def test_lut_forward_equals_dense_with_batch_and_sequence_dims(mode, bias, kernel):
    layer, b = make(mode, bias)
    layer.kernel = kernel
    dense_w = layer.dequantize()
    for shape in [(40,), (3, 40), (2, 5, 40)]:
        x = torch.randn(shape)
        y = layer(x)
        ref = F.linear(x.double(), dense_w.double(), b.double() if b is not None else None)
        assert y.shape == (*shape[:-1], 24)
        assert (y.double() - ref).norm() / ref.norm() < 1e-5
    layer.kernel = "dense"
    x = torch.randn(2, 5, 40)
    assert torch.equal(layer(x), F.linear(x, dense_w, b))


def test_state_dict_round_trip_and_registry():
    layer, _ = make()
    assert MODULES[layer.meta()["module"]] is ShiftAddLinear
    empty = ShiftAddLinear.from_meta(layer.meta())
    empty.load_state_dict(layer.state_dict())
    x = torch.randn(4, 40)
    assert empty.kernel == "auto"  # a loaded module runs from its packed planes
    torch.testing.assert_close(empty(x), F.linear(x, layer.dequantize(), layer.bias), rtol=1e-5, atol=1e-5)
    assert layer.nbytes == sum(t.numel() * t.element_size() for t in layer.buffers())


def test_kernel_switch_and_bad_kernel():
    layer, _ = make()
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    assert set_kernel(model, "dense") == 1 and layer.kernel == "dense"
    layer(torch.randn(2, 40))
    assert layer._dense is not None  # the dense kernel keeps its decoded weight
    assert set_kernel(model, "native") == 1 and layer._dense is None  # the look-up kernels do not
    with pytest.raises(ConfigError, match="kernel"):
        layer.kernel = "gpu"
