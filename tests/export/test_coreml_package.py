"""Core ML export: the saved .mlpackage's program, read back by coremltools, holds every palettized
layer as a look-up-table op whose decoded weight is llmpress's bit for bit, and computes the model's
forward (checked by a numpy evaluator of its ops: Core ML's own runtime needs macOS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmpress import checkpoint
from llmpress.cli import main
from llmpress.errors import ConfigError
from llmpress.export import coreml_package as cp
from llmpress.methods.kmeans import KMeansConfig
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.nn import FormatModule

from tests.conftest import make_model
from tests.export import mil_numpy

pytest.importorskip("coremltools")


def palettized(tokenizer, **kmeans):
    model = make_model(len(tokenizer))
    compress_model(model, "kmeans", KMeansConfig(**kmeans), progress=False)
    return model


def program(path):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    spec = ml.get_spec()
    return load(spec, specification_version=spec.specificationVersion, file_weights_dir=ml.weights_dir)


@pytest.mark.parametrize("settings", [{"bits": 3, "group_size": 1}, {"bits": 4, "group_size": 16},
                                      {"bits": 2, "group_size": 0}, {"bits": 8, "group_size": 0}])
def test_every_palettized_linear_is_a_lut_op_with_llmpress_weights(tiny_tokenizer, tmp_path, settings):
    model = palettized(tiny_tokenizer, **settings)
    r = cp.write(model, tmp_path / "m.mlpackage", seqlen=8)
    back = cp.read_back(r["path"])
    layers = {n: m for n, m in model.named_modules() if isinstance(m, FormatModule)}
    assert len(back) == len(layers) == r["lut_layers"] == 14
    for name, m in layers.items():
        b = back[cp.op_name(name)]
        assert b["consumers"] == ["linear"] and b["bits"] == settings["bits"], name
        assert np.array_equal(b["weight"], m.dequantize().numpy()), name


def test_the_program_computes_the_models_forward(tiny_tokenizer, tmp_path):
    model = palettized(tiny_tokenizer, bits=3, group_size=1)
    path = cp.write(model, tmp_path / "m.mlpackage", seqlen=24)["path"]
    ids = torch.randint(2, 300, (1, 24), generator=torch.Generator().manual_seed(0))
    got = next(iter(mil_numpy.run(program(path), {"input_ids": ids.numpy().astype(np.int32)}).values()))
    with torch.no_grad():
        ref = model(input_ids=ids).logits.numpy()
    assert got.shape == ref.shape
    # float16 norm weights and embedding in the package: about 1e-3 of the logits' range
    assert np.abs(got - ref).max() < 3e-3 * np.abs(ref).max()
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_indices_are_stored_at_their_bit_width(tiny_tokenizer, tmp_path):
    blob = {}
    for bits in (2, 4, 8):
        cp.write(palettized(tiny_tokenizer, bits=bits), tmp_path / f"{bits}.mlpackage", seqlen=8)
        blob[bits] = (tmp_path / f"{bits}.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").stat().st_size
    linear_weights = 2 * (2 * 96 * 96 + 2 * 48 * 96 + 3 * 96 * 160)  # two layers' q/o, k/v, gate/up/down
    tables = lambda bits: 14 * (1 << bits) * 2  # noqa: E731  one float16 table per layer
    alignment = 2 * 14 * 64  # indices and table of each layer, each blob aligned to 64 bytes
    for lo, hi in ((2, 4), (4, 8)):
        expected = linear_weights * (hi - lo) / 8 + tables(hi) - tables(lo)
        assert blob[hi] - blob[lo] == pytest.approx(expected, abs=alignment)


def test_what_core_ml_cannot_hold_is_refused(tiny_tokenizer, tmp_path):
    model = make_model(len(tiny_tokenizer))
    compress_model(model, "rtn", RTNConfig(bits=4, group_size=32), progress=False)
    with pytest.raises(ConfigError, match="palettized weights"):
        cp.write(model, tmp_path / "m.mlpackage")
    with pytest.raises(ConfigError, match="not 5"):
        cp.write(palettized(tiny_tokenizer, bits=5), tmp_path / "m.mlpackage")
    with pytest.raises(ConfigError, match="mlpackage"):
        cp.write(palettized(tiny_tokenizer, bits=3), tmp_path / "m.bin")
    assert not (tmp_path / "m.mlpackage").exists()


def test_cli_exports_a_palettized_checkpoint(tiny_tokenizer, tmp_path, capsys):
    model = palettized(tiny_tokenizer, bits=3, group_size=1)
    ck = checkpoint.save(model, tmp_path / "ck", tokenizer=tiny_tokenizer, method="kmeans", source="tiny")
    out = tmp_path / "m.mlpackage"
    assert main(["export", str(ck), "--to", "coreml", "--out", str(out), "--seqlen", "8"]) == 0
    assert "14 palettized layers" in capsys.readouterr().out
    assert (out / "Manifest.json").is_file() and len(cp.read_back(out)) == 14
    assert main(["export", str(ck), "--to", "coreml", "--out", str(out)]) == 2  # exists
    assert main(["export", str(ck), "--to", "coreml", "--out", str(tmp_path / "n.mlpackage"), "--seqlen", "0"]) == 2
