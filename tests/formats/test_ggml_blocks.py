"""ggml block layouts: llmpress's encoder and decoder against gguf-py's own dequantizer (the Python
reference of llama.cpp's ``dequantize_row_*``), bit for bit, for every supported type."""

import numpy as np
import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS
from llmpress.formats.ggml_blocks import TYPES, BlockFields, GGMLBlocks, GGMLSpec, decode_blocks, encode_blocks

gguf = pytest.importorskip("gguf")


def random_fields(t, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = t.sc_range
    codes = torch.randint(0, len(t.levels), (n, t.block), generator=g).to(torch.uint8)
    sc = torch.randint(lo, hi + 1, (n, t.n_sub), generator=g).to(torch.int16)
    d = (torch.randn(n, generator=g) * 0.01).half()
    if t.has_min:
        m = torch.randint(0, hi + 1, (n, t.n_sub), generator=g).to(torch.int16)
        dmin = (torch.rand(n, generator=g) * 0.01).half()
    else:
        m, dmin = torch.zeros(n, t.n_sub, dtype=torch.int16), torch.zeros(n, dtype=torch.float16)
    return BlockFields(codes, d, sc, dmin, m)


@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_bytes_decode_as_gguf_py_decodes_them(qtype):
    t = TYPES[qtype]
    f = random_fields(t, 40, seed=len(qtype))
    blocks = encode_blocks(qtype, f)
    assert blocks.shape == (40, t.nbytes)
    ref = gguf.quants.dequantize(blocks.numpy(), getattr(gguf.GGMLQuantizationType, qtype)).reshape(40, t.block)
    ours = f.values(t).numpy()
    assert np.array_equal(ref.view(np.uint32), ours.view(np.uint32))
    back = decode_blocks(qtype, blocks)
    for name in ("codes", "d", "sc", "dmin", "m"):
        assert torch.equal(getattr(back, name), getattr(f, name)), name


@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_tensor_rows_and_meta_round_trip(qtype):
    t = TYPES[qtype]
    rows, cols = 5, 2 * t.block if t.block == 256 else 96
    spec = GGMLSpec((rows, cols), qtype)
    x = GGMLBlocks.from_fields(spec, random_fields(t, rows * spec.n_blocks, seed=3))
    assert x.blocks.shape == (rows, spec.row_bytes) and x.nbytes == rows * cols * t.bits_per_weight / 8
    full = x.dequantize()
    assert torch.equal(x.dequantize_rows(2, 4), full[2:4])
    again = FORMATS[x.meta()["format"]].from_meta(x.meta())
    assert again.spec == spec and again.blocks.shape == x.blocks.shape
    # The bytes are ggml's: each row is what gguf-py reads for a tensor of that shape.
    ref = gguf.quants.dequantize(x.blocks.numpy(), getattr(gguf.GGMLQuantizationType, qtype))
    assert np.array_equal(ref, full.numpy())


def test_refusals():
    with pytest.raises(ConfigError, match="not a multiple"):
        GGMLSpec((4, 576), "Q3_K")
    with pytest.raises(ConfigError, match="unknown ggml block type"):
        GGMLSpec((4, 256), "Q5_K")
    f = random_fields(TYPES["Q4_K"], 2)
    f.sc[0, 0] = 64
    with pytest.raises(ConfigError, match="outside"):
        encode_blocks("Q4_K", f)
