"""GGUF export: read back by gguf-py (llama.cpp's own Python reader and dequantizer), every tensor
equals llmpress's decoded weight bit for bit; what GGUF cannot hold exactly is refused."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from llmpress import api
from llmpress.cli import main
from llmpress.errors import ConfigError
from llmpress.export import gguf_file
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.nn import FormatModule

from tests.conftest import make_model

gguf = pytest.importorskip("gguf")


def template_for(model, path):
    """A metadata-only GGUF with the model's hyper-parameters (the role of the model's own GGUF)."""
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def compressed(tiny_tokenizer, **rtn):
    model = make_model(len(tiny_tokenizer))
    compress_model(model, "rtn", RTNConfig(**rtn), progress=False)
    return model


def read_back(path) -> dict[str, tuple[str, np.ndarray]]:
    r = gguf.GGUFReader(str(path))
    return {t.name: (t.tensor_type.name, gguf.quants.dequantize(t.data, t.tensor_type)) for t in r.tensors}


def expected(model) -> dict[str, np.ndarray]:
    """What each GGUF tensor must hold: llmpress's decoded weights, q/k rows in llama.cpp's order."""
    c = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    heads = {"q_proj": c.num_attention_heads, "k_proj": c.num_key_value_heads}
    out = {}
    for name, m in model.named_modules():
        if name == "lm_head" or not hasattr(m, "weight") and not isinstance(m, FormatModule):
            continue
        target = names.get_name(name)
        if target is None:
            continue
        w = m.dequantize() if isinstance(m, FormatModule) else m.weight.detach().float()
        leaf = name.rsplit(".", 1)[-1]
        if leaf in heads:
            w = w[gguf_file.rope_rows(w.shape[0], heads[leaf])]
        out[f"{target}.weight"] = w.numpy()
    return out


@pytest.mark.parametrize("settings,qtype", [({"bits": 4, "group_size": 32, "symmetric": True}, "Q4_0"),
                                            ({"bits": 8, "group_size": 32, "symmetric": True}, "Q8_0")])
def test_uniform_codes_are_written_as_blocks_exactly(tiny_tokenizer, tmp_path, settings, qtype):
    model = compressed(tiny_tokenizer, **settings)
    r = gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))
    got, want = read_back(r["path"]), expected(model)
    assert set(got) == set(want)
    for name, w in want.items():
        t, data = got[name]
        assert t == ("F32" if "norm" in name or "token_embd" in name else qtype), name
        assert data.shape == w.shape and np.array_equal(data, w), name
    assert r["file_type"] == {"Q4_0": 2, "Q8_0": 7}[qtype]


@pytest.mark.parametrize("grid,bits,hidden,types", [
    ("Q3_K", 3, 288, {"ffn_down": "Q3_K", "attn_q": "Q4_0"}),  # 288 wide: llama.cpp's fallbacks
    ("Q4_K", 4, 288, {"ffn_down": "Q4_K", "attn_output": "Q5_0"}),
    ("Q2_K", 2, 256, {"ffn_down": "Q2_K", "attn_q": "Q2_K"}),
    ("Q4_K", 4, 256, {"ffn_down": "Q4_K", "attn_k": "Q4_K"}),
    ("IQ4_NL", 4, 96, {"ffn_down": "IQ4_NL", "attn_v": "IQ4_NL"}),
])
def test_ggml_block_grids_are_written_as_their_own_bytes(tiny_tokenizer, tmp_path, grid, bits, hidden, types):
    model = make_model(len(tiny_tokenizer), hidden=hidden, intermediate=512)
    compress_model(model, "rtn", RTNConfig(bits=bits, grid=grid), progress=False)
    r = gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))
    got, want = read_back(r["path"]), expected(model)
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name][1].shape == w.shape and np.array_equal(got[name][1], w), name
    for leaf, qtype in types.items():
        assert got[f"blk.1.{leaf}.weight"][0] == qtype
    assert r["file_type"] == {"Q3_K": 11, "Q2_K": 10, "Q4_K": 14, "IQ4_NL": 25}[grid]


def test_asymmetric_4_bit_goes_to_q4_1_only_where_every_offset_is_a_float16(tiny_tokenizer, tmp_path):
    model = compressed(tiny_tokenizer, bits=4, group_size=32)
    q = model.model.layers[0].self_attn.q_proj
    fmt = q.packed()
    offsets = -fmt.int_zeros().float() * fmt.scale.float()
    exact = bool((offsets.half().float() == offsets).all())
    if exact:  # then the whole file is written; check it like the symmetric case
        got = read_back(gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))["path"])
        assert got["blk.0.attn_q.weight"][0] == "Q4_1"
        assert np.array_equal(got["blk.0.attn_q.weight"][1], expected(model)["blk.0.attn_q.weight"])
    else:
        with pytest.raises(ConfigError, match="not a float16.*--symmetric"):
            gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))
    # offsets on a float16 grid by construction: scales of 2^-k, so -zero x scale is exact
    for m in model.modules():
        if isinstance(m, FormatModule):
            m.scale = torch.full_like(m.scale, 2.0 ** -7)
    got = read_back(gguf_file.write(model, tmp_path / "p.gguf", template_for(model, tmp_path / "t.gguf"))["path"])
    want = expected(model)
    assert all(got[n][0] == "Q4_1" for n in want if "blk" in n and "norm" not in n)
    assert all(np.array_equal(got[n][1], w) for n, w in want.items())


def test_a_float_model_is_written_bit_for_bit(tiny_tokenizer, tmp_path):
    model = make_model(len(tiny_tokenizer))
    got = read_back(gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))["path"])
    want = expected(model)
    assert all(got[n][0] == "F32" and np.array_equal(got[n][1], w) for n, w in want.items())
    assert "output.weight" not in got  # tied head: llama.cpp reads token_embd


@pytest.mark.parametrize("settings,message", [
    ({"bits": 3, "group_size": 32}, "exact block only"),
    ({"bits": 4, "group_size": 64, "symmetric": True}, "32 weights"),
    ({"bits": 8, "group_size": 32}, "exact block only"),
])
def test_what_gguf_cannot_hold_is_refused_in_one_line(tiny_tokenizer, tmp_path, settings, message):
    model = compressed(tiny_tokenizer, **settings)
    with pytest.raises(ConfigError, match=message):
        gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))
    assert not (tmp_path / "m.gguf").exists()


def test_palettes_and_other_models_are_refused(tiny_tokenizer, tmp_path):
    from llmpress.methods.kmeans import KMeansConfig

    model = make_model(len(tiny_tokenizer))
    compress_model(model, "kmeans", KMeansConfig(bits=3), progress=False)
    with pytest.raises(ConfigError, match="no block type for palette"):
        gguf_file.write(model, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))
    other = make_model(len(tiny_tokenizer), hidden=128)
    with pytest.raises(ConfigError, match="not this model's GGUF"):
        gguf_file.write(other, tmp_path / "m.gguf", template_for(model, tmp_path / "t.gguf"))


def test_cli_exports_a_checkpoint_and_needs_a_template_for_non_gguf_sources(tiny_tokenizer, tmp_path, capsys):
    from llmpress import checkpoint

    model = compressed(tiny_tokenizer, bits=4, group_size=32, symmetric=True)
    ck = checkpoint.save(model, tmp_path / "ck", tokenizer=tiny_tokenizer, method="rtn", source="tiny")
    assert main(["export", str(ck), "--out", str(tmp_path / "x.gguf")]) == 2
    assert "was not made from one" in capsys.readouterr().err
    template = template_for(model, tmp_path / "t.gguf")
    assert main(["export", str(ck), "--out", str(tmp_path / "x.gguf"), "--template", str(template)]) == 0
    assert "Q4_0" in capsys.readouterr().out
    assert main(["export", str(ck), "--out", str(tmp_path / "x.gguf"), "--template", str(template)]) == 2  # exists
    assert main(["export", str(ck), "--to", "onnx", "--out", str(tmp_path / "y")]) == 2
    assert np.array_equal(read_back(tmp_path / "x.gguf")["blk.1.ffn_down.weight"][1],
                          expected(model)["blk.1.ffn_down.weight"])


def test_float_weights_on_a_q8_0_grid_are_written_as_q8_0_losslessly():
    g = torch.Generator().manual_seed(0)
    d = (torch.rand(6, 3, 1, generator=g) * 0.01).half().float()
    q = torch.randint(-127, 128, (6, 3, 32), generator=g).float()
    q[:, :, 0] = 127  # each block's largest code, as Q8_0 quantization leaves it
    on_grid = (q * d).reshape(6, 96)
    e = gguf_file.float_on_q8_0_grid(on_grid)
    assert e is not None and e.qtype == "Q8_0"
    assert np.array_equal(gguf.quants.dequantize(e.data, gguf.GGMLQuantizationType.Q8_0), on_grid.numpy())
    off = on_grid.clone()
    off[2, 5] += 1e-4
    assert gguf_file.float_on_q8_0_grid(off) is None  # one weight off the grid: written as F32
    assert gguf_file.float_on_q8_0_grid(torch.randn(4, 40)) is None
