"""Layer-by-layer compression from the files on disk gives the in-memory result, one float layer at a time."""

import json

import pytest
import torch
from torch import nn

from llmpress import api
from llmpress.errors import ConfigError, ModelSpecError
from llmpress.methods import get_method, needs_calibration
from llmpress.models import layer_by_layer as lbl
from llmpress.models import load_model
from llmpress.models.calibrated import compress_calibrated
from llmpress.models.compress import compress_model
from tests.conftest import make_model

CASES = [
    ("rtn", {"bits": 3, "group_size": 32}),
    ("rtn", {"bits": 3, "grid": "Q3_K"}),
    ("gptq", {"bits": 3, "group_size": 32}),
    ("gptq", {"bits": 4, "group_size": 32, "act_order": True}),
    ("kmeans", {"bits": 3}),
    ("kmeans", {"bits": 3, "sensitivity": "hessian", "error_feedback": True}),
    ("shiftadd", {"bits": 3, "row_group": 0}),
]


def calibration(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 64), generator=torch.Generator().manual_seed(0))


def in_memory(folder, method, config, ids):
    model = load_model(str(folder)).model
    if needs_calibration(method, config):
        compress_calibrated(model, method, config, ids, progress=False)
    else:
        compress_model(model, method, config, progress=False)
    return model


def assert_same_model(a: nn.Module, b: nn.Module, vocab: int) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    x = torch.randint(0, vocab, (2, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)


@pytest.mark.parametrize("method,settings", CASES, ids=[f"{m}-{'-'.join(map(str, s.values()))}" for m, s in CASES])
def test_layer_by_layer_equals_the_in_memory_path(tiny_dir, tiny_tokenizer, method, settings):
    config = get_method(method).config_cls(**settings)
    ids = calibration(len(tiny_tokenizer))
    got, report = lbl.compress_layer_by_layer(tiny_dir, method, config, ids, progress=False)
    assert_same_model(in_memory(tiny_dir, method, config, ids), got, len(tiny_tokenizer))
    assert [t.layer for t in report.timings] == ["model.layers.0", "model.layers.1"]
    assert len(report.layers) == 14


@pytest.fixture(scope="module")
def untied_sharded_dir(tmp_path_factory, tiny_tokenizer):
    """An untied head and the weights in several shards with an index, as large models are saved."""
    path = tmp_path_factory.mktemp("untied-sharded")
    make_model(len(tiny_tokenizer), seed=3, tied=False).save_pretrained(path, max_shard_size="100KB")
    tiny_tokenizer.save_pretrained(path)
    assert (path / lbl.INDEX).is_file()
    return path


def test_sharded_files_and_an_untied_head(untied_sharded_dir, tiny_tokenizer):
    config = get_method("gptq").config_cls(bits=3, group_size=32)
    ids = calibration(len(tiny_tokenizer))
    got, _ = lbl.compress_layer_by_layer(untied_sharded_dir, "gptq", config, ids, progress=False)
    assert got.lm_head.weight is not got.model.embed_tokens.weight
    assert_same_model(in_memory(untied_sharded_dir, "gptq", config, ids), got, len(tiny_tokenizer))


def test_only_one_float_layer_is_real_at_a_time(tiny_dir, tiny_tokenizer, monkeypatch):
    """When a layer is read from disk, the layers before it are compressed and those after still meta."""
    seen = []
    load_into = lbl.SafetensorsFolder.load_into

    def spy(self, module, prefix, dtype):
        if prefix.startswith("model.layers."):
            model = spy.model
            i = int(prefix.rsplit(".", 1)[1])
            before = [any(isinstance(m, nn.Linear) for m in model.model.layers[j].modules()) for j in range(i)]
            after = [all(p.is_meta for p in model.model.layers[j].parameters()) for j in range(i, 2)]
            seen.append((i, before, after))
        return load_into(self, module, prefix, dtype)

    skeleton = lbl.skeleton

    def keep(folder, dtype):
        spy.model = skeleton(folder, dtype)
        return spy.model

    monkeypatch.setattr(lbl.SafetensorsFolder, "load_into", spy)
    monkeypatch.setattr(lbl, "skeleton", keep)
    config = get_method("gptq").config_cls(bits=3, group_size=32)
    lbl.compress_layer_by_layer(tiny_dir, "gptq", config, calibration(len(tiny_tokenizer)), progress=False)
    assert seen == [(0, [], [True, True]), (1, [False], [True])]


def test_a_prefix_of_layers_can_be_measured(tiny_dir):
    config = get_method("rtn").config_cls(bits=3)
    model, report = lbl.compress_layer_by_layer(tiny_dir, "rtn", config, layers=1, progress=False)
    assert len(report.timings) == 1 and report.timings[0].rss_mb > 0
    assert all(p.is_meta for p in model.model.layers[1].parameters())


def test_api_and_cli_write_the_same_checkpoint(tiny_dir, tmp_path):
    from llmpress import checkpoint
    from llmpress.cli import main

    a = api.compress(tiny_dir, "gptq", out=tmp_path / "a", bits=3, group_size=32, calib_samples=4,
                     calib_seqlen=64, progress=False)
    assert main(["compress", "--model", str(tiny_dir), "--method", "gptq", "--bits", "3", "--group-size", "32",
                 "--calib-samples", "4", "--calib-seqlen", "64", "--layer-by-layer", "--out", str(tmp_path / "b")]) == 0
    ma, mb = (json.loads((tmp_path / d / "llmpress.json").read_text()) for d in "ab")
    assert ma["tensors"] == mb["tensors"]
    assert len(mb["extra"]["layer_by_layer"]["layer_seconds"]) == 2
    la, lb = checkpoint.load(tmp_path / "a").model, checkpoint.load(tmp_path / "b").model
    assert_same_model(la, lb, la.config.vocab_size)


def test_what_layer_by_layer_refuses(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="mixed precision"):
        lbl.compress_layer_by_layer(tiny_dir, "shiftadd", get_method("shiftadd").config_cls(avg_bits=3.5, row_group=0),
                                    torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ConfigError, match="needs calibration tokens"):
        lbl.compress_layer_by_layer(tiny_dir, "gptq", get_method("gptq").config_cls(bits=3))
    with pytest.raises(ConfigError, match="calibration tokens cannot determine"):
        lbl.compress_layer_by_layer(tiny_dir, "gptq", get_method("gptq").config_cls(bits=3),
                                    torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ConfigError, match="pass its path"):
        api.compress(api.load(tiny_dir), "rtn", layer_by_layer=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(ModelSpecError, match="neither model.safetensors"):
        lbl.compress_layer_by_layer(tmp_path / "empty", "rtn", get_method("rtn").config_cls(bits=3))
    with pytest.raises(ModelSpecError, match="needs a Hugging Face model folder"):
        lbl.model_folder(str(tmp_path))


def test_weights_that_do_not_match_the_config_are_refused(tiny_dir, tmp_path):
    import shutil

    folder = tmp_path / "wrong"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSpecError, match="on disk, .* in config.json"):
        lbl.compress_layer_by_layer(folder, "rtn", get_method("rtn").config_cls(bits=3), progress=False)
