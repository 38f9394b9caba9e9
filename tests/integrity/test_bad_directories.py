"""Edited, forged and misplaced inputs for every loader, one row each.

Rows forge the manifest (hashes recomputed, as whoever edits a downloaded file can), so what is
exercised is the structural check behind the hashes. Every row must end in a CheckpointError
whose one-line message names the problem, before any tensor is allocated from the claim.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from llmpress import api, checkpoint, deltastore
from llmpress.errors import CheckpointError
from llmpress.methods.rtn import RTNConfig
from llmpress.models.compress import compress_model
from llmpress.train import state as train_state
from tests.conftest import make_model
from tests.integrity.forge import forge, read_safetensors, write_safetensors

Q = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_tokenizer):
    model = make_model(len(tiny_tokenizer))
    compress_model(model, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    return checkpoint.save(model, tmp_path_factory.mktemp("ck") / "rtn", tokenizer=tiny_tokenizer, method="rtn",
                           config=RTNConfig(bits=3, group_size=32).to_dict())


@pytest.fixture
def ck(built, tmp_path):
    return shutil.copytree(built, tmp_path / "ck")


def module(m, name=Q):
    return m["modules"][name]


CHECKPOINT_ROWS = {
    # The reported case: 50 TB would have been allocated for a 64x128 layer.
    "shape 10^7 x 10^7": (lambda m: module(m).update(shape=[10**7, 10**7]), "stores a CompressedLinear .* makes it a Linear"),
    "fractional bits": (lambda m: module(m).update(bits=3.7), "differs from any|not a valid"),
    "bits as text": (lambda m: module(m).update(bits="3"), "differs from any|not a valid"),
    "bits out of range": (lambda m: module(m).update(bits=40), "not a valid"),
    "negative group size": (lambda m: module(m).update(group_size=-4), "not a valid"),
    "group size changing the tensor shapes": (lambda m: module(m).update(group_size=16), "stored as"),
    "unknown key": (lambda m: module(m).update(surprise=1), "differs from any"),
    "module entry not a table": (lambda m: m["modules"].update({Q: 5}), "unknown"),
    "unknown module class": (lambda m: module(m).update(module="os.system"), "unknown"),
    "module the model lacks": (lambda m: m["modules"].update({"model.layers.9.mlp": m["modules"].pop(Q)}),
                               "names no module"),
    "empty module name": (lambda m: m["modules"].update({"": m["modules"].pop(Q)}), "names no module"),
    "tensor table shape": (lambda m: m["tensors"][f"{Q}.codes"].update(shape=[1]), "stored as"),
    "tensor table dtype": (lambda m: m["tensors"][f"{Q}.codes"].update(dtype="float64"), "stored as"),
    "tensor table entry gone": (lambda m: m["tensors"].pop(f"{Q}.scale"), "unexpected"),
    "tensor table shape not a list": (lambda m: m["tensors"][f"{Q}.codes"].update(shape="big"), "expected list"),
    "alias to nothing": (lambda m: m["aliases"].update({"lm_head.weight": "nope"}), "aliases"),
    "alias from nothing": (lambda m: m["aliases"].update({"nope.weight": "model.norm.weight"}), "aliases"),
    "file outside the directory": (lambda m: m["files"].update({"../secret": {"bytes": 1, "sha256": "0" * 64}}),
                                   "only plain file names"),
    "absolute file name": (lambda m: m["files"].update({"/etc/hostname": {"bytes": 1, "sha256": "0" * 64}}),
                           "only plain file names"),
    "size as text": (lambda m: m["files"][checkpoint.TENSORS].update(bytes="1"), "expected int"),
    "hash not hex": (lambda m: m["files"][checkpoint.TENSORS].update(sha256="../" * 30), "not 64 hex"),
    "files not a table": (lambda m: m.update(files=[]), "expected dict"),
    "tensors file not listed": (lambda m: m["files"].pop(checkpoint.TENSORS), "does not list"),
    "storage table gone": (lambda m: m.pop("storage"), "lacks 'storage'"),
    "layer row without bytes": (lambda m: m["layers"][0].pop("bytes"), "layers\\[0\\] lacks 'bytes'"),
}


@pytest.mark.parametrize("row", sorted(CHECKPOINT_ROWS))
def test_forged_checkpoint_manifest(ck, row):
    edit, match = CHECKPOINT_ROWS[row]
    forge(ck, checkpoint.MANIFEST, edit)
    for read in (checkpoint.load, api.info):
        with pytest.raises(CheckpointError, match=match) as info:
            read(ck)
        assert "\n" not in str(info.value)


def test_unsealed_edit_is_caught_first(ck):
    forge(ck, checkpoint.MANIFEST, lambda m: module(m).update(shape=[10**7, 10**7]), reseal=False)
    with pytest.raises(CheckpointError, match="was modified after it was written"):
        checkpoint.load(ck)


@pytest.mark.parametrize("row", ["length", "offsets", "dtype", "shape"])
def test_forged_tensor_header(ck, row):
    f = ck / checkpoint.TENSORS
    header, data = read_safetensors(f)
    entry = header[f"{Q}.codes"]
    length = None
    if row == "length":
        length = 10**12
    elif row == "offsets":
        entry["data_offsets"][1] = 10**15
    elif row == "dtype":
        entry["dtype"] = "F32"  # same bytes claimed as another type: 4x fewer elements than the shape says
    else:
        entry["shape"] = [10**7, 10**7]
    write_safetensors(f, header, data, length)
    forge(ck, checkpoint.MANIFEST)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        checkpoint.load(ck)


def test_symlink_leaving_the_directory(ck, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(ck / checkpoint.TENSORS, outside)
    os.symlink(outside, ck / checkpoint.TENSORS)
    with pytest.raises(CheckpointError, match="outside"):
        checkpoint.load(ck)


def test_unforged_checkpoint_still_loads(ck):
    forge(ck, checkpoint.MANIFEST)
    assert checkpoint.load(ck).model is not None


# --- deltas -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_delta(tmp_path_factory, tiny_tokenizer):
    from llmpress.methods.deltadq import DeltaDQConfig
    from llmpress.models import delta as dm
    from tests.models.test_delta import finetune_of, ids

    base = make_model(len(tiny_tokenizer))
    d = dm.compress(base, finetune_of(base), "deltadq", DeltaDQConfig(ratio=8, group_sizes=(16, 32)), ids(),
                    progress=False)
    return deltastore.save(d, tmp_path_factory.mktemp("delta") / "d")


@pytest.fixture
def delta(built_delta, tmp_path):
    return shutil.copytree(built_delta, tmp_path / "d")


def first_linear(m):
    return m["linear"][sorted(m["linear"])[0]]


DELTA_ROWS = {
    "huge shape": (lambda m: first_linear(m).update(shape=[10**7, 10**7]), "stored as|not a valid"),
    "unknown format": (lambda m: first_linear(m).update(format="zip"), "unknown"),
    "unknown key": (lambda m: first_linear(m).update(surprise=1), "differs from any"),
    "linear entry not a table": (lambda m: m["linear"].update({"x": []}), "unknown"),
    "dense name not text": (lambda m: m["dense"].append(7), "non-name"),
    "dense tensor absent": (lambda m: m["dense"].append("no.such"), "missing"),
    "base hash not text": (lambda m: m["base"].update(sha256_params=1), "expected str"),
    "file outside": (lambda m: m["files"].update({"../x": {"bytes": 0, "sha256": "0" * 64}}), "only plain"),
}


@pytest.mark.parametrize("row", sorted(DELTA_ROWS))
def test_forged_delta_manifest(delta, row):
    edit, match = DELTA_ROWS[row]
    forge(delta, deltastore.MANIFEST, edit)
    with pytest.raises(CheckpointError, match=match):
        deltastore.load(delta)


# --- training states ----------------------------------------------------------------------------

def tiny_run(tmp_path):
    torch.manual_seed(0)
    named = [("w", torch.nn.Parameter(torch.randn(4, 3))), ("b", torch.nn.Parameter(torch.randn(3)))]
    opt = torch.optim.AdamW([p for _, p in named])
    sum((p ** 2).sum() for _, p in named).backward()
    opt.step()
    path = tmp_path / "state"
    train_state.save(path, 1, named, opt, {"lr": 1}, {}, [], [0.5], {"centroids": torch.zeros(2)})
    return path, named, opt


def test_state_round_trip(tmp_path):
    path, named, opt = tiny_run(tmp_path)
    fresh = [(n, torch.nn.Parameter(torch.zeros_like(p))) for n, p in named]
    saved = train_state.load(path, fresh, torch.optim.AdamW([p for _, p in fresh]), {"lr": 1}, {})
    assert saved.step == 1 and torch.equal(fresh[0][1], named[0][1])


STATE_ROWS = {
    "step as text": (lambda m: m.update(step="1"), "expected int"),
    "negative step": (lambda m: m.update(step=-1), "expected an integer"),
    "other parameters": (lambda m: m.update(params=["w"]), "other trainable parameters"),
    "file outside": (lambda m: m["files"].update({"../x": {"bytes": 0, "sha256": "0" * 64}}), "only plain"),
    "file missing": (lambda m: m["files"].pop(train_state.METHOD), "lists files"),
    "no format": (lambda m: m.pop("format"), "not an llmpress training state"),
}


@pytest.mark.parametrize("row", sorted(STATE_ROWS))
def test_forged_training_state(tmp_path, row):
    path, named, opt = tiny_run(tmp_path)
    edit, match = STATE_ROWS[row]
    forge(path, train_state.STATE, edit)
    with pytest.raises(CheckpointError, match=match):
        train_state.load(path, named, opt, {"lr": 1}, {})


def test_state_tensor_shapes_are_checked_before_reading(tmp_path):
    path, named, opt = tiny_run(tmp_path)
    f = path / train_state.PARAMS
    header, data = read_safetensors(f)
    header["w"]["shape"] = [3, 4]
    write_safetensors(f, header, data)
    forge(path, train_state.STATE)
    with pytest.raises(CheckpointError, match="stored as float32 \\[3, 4\\]"):
        train_state.load(path, named, opt, {"lr": 1}, {})
