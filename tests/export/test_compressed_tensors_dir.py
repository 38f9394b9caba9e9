"""compressed-tensors export: read back by compressed-tensors' own decompression and by
transformers' compressed-tensors integration, every weight equals llmpress's decoded weight."""

from __future__ import annotations

import json

import pytest
import torch

from llmpress import api, checkpoint
from llmpress.cli import main
from llmpress.errors import ConfigError
from llmpress.export import compressed_tensors_dir as ctd
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.nn import FormatModule

from tests.conftest import make_model

pytest.importorskip("compressed_tensors")


def compressed(tokenizer, **rtn):
    model = make_model(len(tokenizer))
    compress_model(model, "rtn", RTNConfig(**rtn), progress=False)
    return model


def decoded(model) -> dict[str, torch.Tensor]:
    return {n: m.dequantize() for n, m in model.named_modules() if isinstance(m, FormatModule)}


@pytest.mark.parametrize("settings", [{"bits": 4, "group_size": 32, "symmetric": True},
                                      {"bits": 8, "group_size": 0, "symmetric": True},
                                      {"bits": 3, "group_size": 16, "symmetric": True}])
def test_compressed_tensors_own_decompression_gives_llmpress_weights(tiny_tokenizer, tmp_path, settings):
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file

    model = compressed(tiny_tokenizer, **settings)
    out = ctd.write(model, tiny_tokenizer, tmp_path / "ct")["path"]
    config = QuantizationConfig.model_validate(json.loads((tmp_path / "ct" / "config.json").read_text())
                                               ["quantization_config"])
    scheme = config.config_groups["group_0"]
    state = load_file(f"{out}/model.safetensors")
    for name, w in decoded(model).items():
        local = {k.rsplit(".", 1)[-1]: v for k, v in state.items() if k.rsplit(".", 1)[0] == name}
        assert set(local) == {"weight_packed", "weight_scale", "weight_shape"}, name
        got = PackedQuantizationCompressor.decompress(local, scheme)["weight"]
        assert got.dtype == torch.float32 and torch.equal(got, w), name


def test_transformers_loads_the_folder_with_llmpress_weights_and_logits(tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    model = compressed(tiny_tokenizer, bits=4, group_size=32, symmetric=True)
    ctd.write(model, tiny_tokenizer, tmp_path / "ct")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()
    x = torch.randint(2, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=x).logits, model(input_ids=x).logits, rtol=1e-5, atol=1e-5)
    # the layers transformers built hold the packed codes and decompress them in forward; after it,
    # each carries the decompressed weight, which is llmpress's bit for bit
    for name, w in decoded(model).items():
        assert torch.equal(hf.get_submodule(name).weight.float(), w), name


@pytest.mark.parametrize("settings,message", [({"bits": 4, "group_size": 32}, "asymmetric"),
                                              ({"bits": 4, "group_size": 64, "symmetric": True}, "ragged")])
def test_what_it_cannot_hold_is_refused(tiny_tokenizer, tmp_path, settings, message):
    model = compressed(tiny_tokenizer, **settings)
    with pytest.raises(ConfigError, match=message):
        ctd.write(model, tiny_tokenizer, tmp_path / "ct")
    assert not (tmp_path / "ct").exists()


def test_palettes_are_refused_and_the_cli_writes_a_folder(tiny_tokenizer, tmp_path, capsys):
    from llmpress.methods.kmeans import KMeansConfig

    pal = make_model(len(tiny_tokenizer))
    compress_model(pal, "kmeans", KMeansConfig(bits=3), progress=False)
    with pytest.raises(ConfigError, match="palette"):
        ctd.write(pal, tiny_tokenizer, tmp_path / "p")
    model = compressed(tiny_tokenizer, bits=4, group_size=32, symmetric=True)
    ck = checkpoint.save(model, tmp_path / "ck", tokenizer=tiny_tokenizer, method="rtn", source="tiny")
    assert main(["export", str(ck), "--to", "compressed-tensors", "--out", str(tmp_path / "ct")]) == 0
    assert "pack-quantized, 4-bit group 32" in capsys.readouterr().out
    assert main(["export", str(ck), "--to", "compressed-tensors", "--out", str(tmp_path / "ct")]) == 2
    assert api.export(ck, to="compressed-tensors", out=tmp_path / "ct", overwrite=True)["bytes"] > 0
