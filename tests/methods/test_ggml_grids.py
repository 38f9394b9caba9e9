"""Fitting llama.cpp block grids, RTN onto them, and GPTQ whose grid is a ggml type."""

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import uniform
from llmpress.formats.ggml_blocks import TYPES
from llmpress.methods import ggml_grids
from llmpress.methods.error_feedback import quantize_columns
from llmpress.methods.gptq import GPTQConfig, _BlockColumns, quantize
from llmpress.methods.hessian import ordered_inverse, output_error
from llmpress.methods.rtn import RTNConfig, quantize_weight


@pytest.fixture(scope="module")
def wide_layer():
    """A weight [40, 512] with a few outliers and the Hessian of correlated inputs of uneven scales."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(40, 512, generator=g) * 0.03
    w[3, 7] = 0.4
    mix = torch.randn(512, 512, generator=g) * 0.05 + torch.eye(512)
    x = torch.randn(2048, 512, generator=g) @ mix * torch.linspace(0.2, 3, 512)
    return w, x.double().T @ x.double()


@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_nearest_is_the_closest_grid_value(wide_layer, qtype):
    w, _ = wide_layer
    t = TYPES[qtype]
    grid = ggml_grids.fit(qtype, w[:, :2 * t.block])
    every_code = grid.nearest_all(w[:, :2 * t.block])
    for block in (0, 1):
        for sub in (0, t.n_sub - 1):
            first = block * t.block + sub * t.sub
            cols = w[:, first:first + t.sub]
            codes, values = grid.nearest(cols, block, sub)
            every = grid.values(block, sub)  # [rows, levels]
            best = (cols.unsqueeze(2) - every.unsqueeze(1)).abs().amin(dim=2)
            assert torch.equal((cols - values).abs(), best)
            assert torch.equal(torch.gather(every, 1, codes.long()), values)
            assert torch.equal(every_code[:, first:first + t.sub], codes)


@pytest.mark.parametrize("qtype,bits,uniform_bits", [("Q2_K", 2, 2), ("Q3_K", 3, 3), ("Q4_K", 4, 4),
                                                     ("IQ4_NL", 4, 4)])
def test_rtn_on_a_block_grid_beats_plain_uniform_groups_of_32(wide_layer, qtype, bits, uniform_bits):
    w, _ = wide_layer
    q = quantize_weight(w, RTNConfig(bits=bits, grid=qtype))
    assert q.FORMAT == "ggml" and q.spec.qtype == qtype
    ref = uniform.quantize(w, uniform_bits, 32)
    assert ((q.dequantize() - w) ** 2).sum() < ((ref.dequantize() - w) ** 2).sum()


@pytest.mark.parametrize("qtype,bits", [("Q2_K", 2), ("Q3_K", 3), ("Q4_K", 4), ("IQ4_NL", 4)])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_on_a_block_grid_beats_rtn_on_it(wide_layer, qtype, bits, act_order):
    w, h = wide_layer
    got = quantize(w, h, GPTQConfig(bits=bits, grid=qtype, act_order=act_order))
    rtn = ggml_grids.round_to_nearest(w, qtype, h.diagonal())
    assert got.spec == rtn.spec and got.nbytes == rtn.nbytes
    assert output_error(w, got.dequantize(), h) < 0.9 * output_error(w, rtn.dequantize(), h)


def test_gptq_runs_on_the_values_it_stores(wide_layer):
    """What error feedback compensated is exactly what the stored blocks decode to."""
    w, h = wide_layer
    w64, order, upper = ordered_inverse(w, h, 0.01, "layer", False)
    from llmpress.formats.ggml_blocks import GGMLSpec

    columns = _BlockColumns(GGMLSpec(tuple(w.shape), "Q3_K"), order, None, h.diagonal())
    used = quantize_columns(w64[:, order], upper, columns, 128)
    assert torch.equal(used.to(torch.float32), columns.fields.build().dequantize())


def test_all_zero_blocks_decode_to_zero():
    w = torch.zeros(3, 512)
    w[1, 300] = 0.5
    for qtype in sorted(TYPES):
        out = ggml_grids.round_to_nearest(w, qtype).dequantize()
        assert torch.equal(out[0], w[0]) and out[1, 300] > 0.4 and out[1, :256].abs().max() == 0


def test_narrow_layers_fall_back_as_llama_cpp_does():
    """llama.cpp 0.3.36's quantizer writes Q4_0 / Q5_0 for k-quant rows not a multiple of 256 wide."""
    assert ggml_grids.grid_type("Q3_K", 1536) == "Q3_K"
    assert ggml_grids.grid_type("Q3_K", 576) == "Q4_0"
    assert ggml_grids.grid_type("Q2_K", 576) == "Q4_0"
    assert ggml_grids.grid_type("Q4_K", 576) == "Q5_0"
    assert ggml_grids.grid_type("IQ4_NL", 576) == "IQ4_NL"
    with pytest.raises(ConfigError, match="does not fit Q2_K's blocks of 256 .nor Q4_0's of 32"):
        ggml_grids.grid_type("Q2_K", 100)
    with pytest.raises(ConfigError, match="does not fit IQ4_NL's blocks of 32$"):
        ggml_grids.grid_type("IQ4_NL", 100)


def test_grid_settings_are_checked():
    with pytest.raises(ConfigError, match="holds 3-bit codes"):
        GPTQConfig(bits=4, grid="Q3_K")
    with pytest.raises(ConfigError, match="grid must be one of"):
        RTNConfig(bits=4, grid="Q4_K_M")
    with pytest.raises(ConfigError, match="grid must be one of"):
        RTNConfig(bits=4, grid="Q4_0")  # a fallback type, not a grid: --symmetric uniform codes are Q4_0
    assert GPTQConfig(bits=3, grid="Q3_K").grid == "Q3_K"
