import torch
from torch import nn

from llmpress.formats.sign_delta import quantize as sign_quantize
from llmpress.methods.deltadq import group_dropout
from llmpress.nn import DeltaLinear


def test_forward_equals_base_plus_reconstructed_delta():
    torch.manual_seed(0)
    base = nn.Linear(96, 40, bias=True)
    d = torch.randn(40, 96) * 0.01
    x = torch.randn(3, 5, 96)
    for fmt in (group_dropout(d, 32, 8, seed=1, bits=4, parts_bits=1), group_dropout(d, 16, 3, 2, 16),
                sign_quantize(d)):
        layer = DeltaLinear(base, fmt)
        dense = nn.functional.linear(x, base.weight + fmt.dequantize(), base.bias)
        assert torch.allclose(layer(x), dense, atol=1e-5)
        assert layer.base.weight is base.weight  # shared, not copied
        assert layer.nbytes == fmt.nbytes
