import json

import pytest
import torch

from llmpress import checkpoint
from llmpress.errors import CheckpointError
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.nn import CompressedLinear


@pytest.fixture
def saved(tiny_model, tiny_tokenizer, tmp_path):
    compress_model(tiny_model, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    path = checkpoint.save(tiny_model, tmp_path / "ck", tokenizer=tiny_tokenizer, method="rtn",
                           config=RTNConfig(bits=3, group_size=32).to_dict(), source="tiny")
    return tiny_model, path


def logits(model, seed=0):
    x = torch.randint(0, model.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x).logits


def test_round_trip_gives_identical_logits(saved):
    model, path = saved
    ck = checkpoint.load(path)
    assert torch.equal(logits(ck.model), logits(model))
    assert sum(isinstance(m, CompressedLinear) for m in ck.model.modules()) == 14
    assert ck.model.lm_head.weight is ck.model.model.embed_tokens.weight
    assert ck.manifest["method"] == "rtn" and ck.manifest["config"] == {"bits": 3, "group_size": 32, "symmetric": False,
                                                                    "grid": "uniform"}
    assert ck.tokenizer("the cat")["input_ids"]


def test_manifest_lists_every_file_and_tensor(saved):
    _, path = saved
    m = checkpoint.read_manifest(path)
    on_disk = {f.name for f in path.iterdir()} - {checkpoint.MANIFEST}
    assert set(m["files"]) == on_disk
    assert m["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
    assert m["tensors"]["model.layers.0.self_attn.q_proj.codes"]["dtype"] == "uint8"
    assert m["tensors"]["model.embed_tokens.weight"]["dtype"] == "float16"
    assert {"torch", "transformers", "llmpress"} <= set(m["versions"])


def test_uncompressed_model_round_trip(tiny_model, tmp_path):
    path = checkpoint.save(tiny_model, tmp_path / "plain")
    ck = checkpoint.load(path)
    assert torch.equal(logits(ck.model), logits(tiny_model))
    assert ck.tokenizer is None


def test_truncated_file(saved):
    _, path = saved
    f = path / checkpoint.TENSORS
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        checkpoint.load(path)


def test_edited_byte(saved):
    _, path = saved
    f = path / checkpoint.TENSORS
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors was modified"):
        checkpoint.load(path)


def test_edited_config(saved):
    _, path = saved
    (path / "config.json").write_text((path / "config.json").read_text().replace("2", "3", 1))
    with pytest.raises(CheckpointError, match="config.json"):
        checkpoint.load(path)


def test_missing_file(saved):
    _, path = saved
    (path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json is missing"):
        checkpoint.load(path)


@pytest.mark.parametrize("edit,reseal,match", [
    (lambda m: m.update(format="something-else"), False, "not an llmpress checkpoint manifest"),
    (lambda m: m.update(format_version=99), False, "format version 99"),
    (lambda m: m.update(format_version=0), False, "format version 0, this llmpress .* reads version 2"),
    (lambda m: m.pop("files"), False, "was modified after it was written"),
    (lambda m: m.pop("manifest_sha256"), False, "carries no manifest_sha256"),
    (lambda m: m.pop("files"), True, "has files=None, expected dict"),
])
def test_foreign_future_or_edited_manifest(saved, edit, reseal, match):
    from llmpress.integrity import seal

    _, path = saved
    mf = path / checkpoint.MANIFEST
    manifest = json.loads(mf.read_text())
    edit(manifest)
    mf.write_text(json.dumps(seal.sealed(manifest) if reseal else manifest))
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(path)


def test_version_1_checkpoint_still_loads_with_a_warning(saved):
    """Written before manifests carried their own hash: everything else is still checked."""
    model, path = saved
    mf = path / checkpoint.MANIFEST
    manifest = json.loads(mf.read_text())
    del manifest["manifest_sha256"]
    manifest["format_version"] = 1
    mf.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="format version 1, written before manifests carried"):
        assert torch.equal(logits(checkpoint.load(path).model), logits(model))
    manifest["modules"]["model.layers.0.self_attn.q_proj"]["shape"] = [10**7, 10**7]
    mf.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="stores a CompressedLinear"):
        checkpoint.load(path)


def test_not_json_and_not_a_checkpoint(saved, tmp_path):
    _, path = saved
    (path / checkpoint.MANIFEST).write_text("{nope")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no llmpress.json"):
        checkpoint.load(tmp_path)


def test_existing_directory_needs_overwrite(saved, tiny_tokenizer):
    model, path = saved
    with pytest.raises(FileExistsError, match="overwrite"):
        checkpoint.save(model, path)
    checkpoint.save(model, path, tokenizer=tiny_tokenizer, overwrite=True)
    checkpoint.load(path)


def test_failed_save_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny_model.config, "save_pretrained", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.save(tiny_model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_weights_shared_without_config_tie(tiny_tokenizer, tmp_path):
    from tests.conftest import make_model

    model = make_model(len(tiny_tokenizer), tied=False)
    model.lm_head.weight = model.model.embed_tokens.weight  # shared by hand, not by the config
    ck = checkpoint.load(checkpoint.save(model, tmp_path / "shared"))
    assert ck.manifest["aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
    assert ck.model.lm_head.weight is ck.model.model.embed_tokens.weight
    assert torch.equal(logits(ck.model), logits(model))


def test_untied_model_stores_both(tiny_tokenizer, tmp_path):
    from tests.conftest import make_model

    model = make_model(len(tiny_tokenizer), tied=False)
    ck = checkpoint.load(checkpoint.save(model, tmp_path / "untied"))
    assert ck.manifest["aliases"] == {}
    assert torch.equal(logits(ck.model), logits(model))


def test_palettized_round_trip(tiny_model, tiny_tokenizer, tmp_path):
    from llmpress.methods.kmeans import KMeansConfig

    config = KMeansConfig(bits=3, group_size=16)
    compress_model(tiny_model, "kmeans", config, progress=False)
    path = checkpoint.save(tiny_model, tmp_path / "km", tokenizer=tiny_tokenizer, method="kmeans",
                           config=config.to_dict())
    ck = checkpoint.load(path)
    assert torch.equal(logits(ck.model), logits(tiny_model))
    q = ck.model.model.layers[0].self_attn.q_proj
    assert q.meta()["format"] == "palette" and q.packed().lut.shape == (96 // 16, 8, 1)
    assert 3 < ck.manifest["storage"]["groups"]["compressed"]["bits_per_weight"] < 3.3
