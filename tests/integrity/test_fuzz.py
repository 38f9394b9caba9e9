"""Fuzzed manifests, safetensors headers, delta and training-state files.

The only allowed outcomes of a load are success or a CheckpointError with a one-line message:
never another exception type, never a hang, never an allocation beyond the files' bytes plus
the model config's own shapes (the address space is capped at 512 MB over what the process maps
before each load). ``make test`` runs a fixed, derandomized set; the slow tier runs more.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmpress import api, checkpoint, deltastore
from llmpress.errors import CheckpointError
from llmpress.train import state as train_state
from tests.integrity import test_bad_directories as rows
from tests.integrity.forge import forge, read_safetensors, write_safetensors
from tests.integrity.fuzzing import bounded, mutate

EXAMPLES = int(os.environ.get("LLMPRESS_FUZZ_EXAMPLES", "30"))
RANDOM = os.environ.get("LLMPRESS_FUZZ_RANDOM") == "1"  # the slow tier explores anew each run
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BUDGET = 512 << 20


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_tokenizer):
    return rows.built.__wrapped__(tmp_path_factory, tiny_tokenizer)


@pytest.fixture(scope="module")
def built_delta(tmp_path_factory, tiny_tokenizer):
    return rows.built_delta.__wrapped__(tmp_path_factory, tiny_tokenizer)


def outcome(load) -> str:
    """Run ``load`` under the memory and time bounds; a CheckpointError must be one line."""
    try:
        with bounded(BUDGET):
            load()
    except CheckpointError as exc:
        assert "\n" not in str(exc), str(exc)
        return "refused"
    return "loaded"


def copy(src: Path) -> Path:
    return Path(shutil.copytree(src, Path(tempfile.mkdtemp(prefix="fuzz-")) / src.name))


def mutate_json_file(data, f: Path) -> None:
    f.write_text(json.dumps(mutate(data, json.loads(f.read_text()))))


def mutate_header(data, f: Path) -> None:
    header, body = read_safetensors(f)
    header = mutate(data, header)
    length = data.draw(st.none() | st.integers(0, 2**64 - 1), label="length prefix")
    cut = data.draw(st.integers(0, len(body)), label="data bytes kept")
    write_safetensors(f, header, body[:cut], length)


@FAST
@given(data=st.data(), reseal=st.booleans())
def test_checkpoint_manifest(built, data, reseal):
    ck = copy(built)
    try:
        forge(ck, checkpoint.MANIFEST, lambda m: mutate(data, m), reseal=reseal)
        outcome(lambda: checkpoint.load(ck))
        outcome(lambda: api.info(ck))
    finally:
        shutil.rmtree(ck.parent)


@FAST
@given(data=st.data())
def test_checkpoint_tensor_header(built, data):
    ck = copy(built)
    try:
        mutate_header(data, ck / checkpoint.TENSORS)
        forge(ck, checkpoint.MANIFEST)
        outcome(lambda: checkpoint.load(ck))
    finally:
        shutil.rmtree(ck.parent)


@pytest.fixture(scope="module")
def built_hf(built, tmp_path_factory):
    """The checkpoint as transformers' save_pretrained writes it (no llmpress manifest)."""
    import llmpress.hf

    out = tmp_path_factory.mktemp("hf") / "hf"
    llmpress.hf.attach(checkpoint.load(built).model, method="rtn").save_pretrained(out)
    return out


@FAST
@given(data=st.data(), target=st.sampled_from(["quantization_config", "header"]), reseal=st.booleans())
def test_transformers_directory(built_hf, data, target, reseal):
    from llmpress.integrity import seal

    d = copy(built_hf)
    try:
        if target == "header":
            mutate_header(data, d / "model.safetensors")
        else:
            config = json.loads((d / "config.json").read_text())
            q = mutate(data, config["quantization_config"])
            config["quantization_config"] = seal.sealed(q) if reseal and isinstance(q, dict) else q
            (d / "config.json").write_text(json.dumps(config))
        outcome(lambda: checkpoint.load(d))
    finally:
        shutil.rmtree(d.parent)


@FAST
@given(data=st.data(), target=st.sampled_from(["manifest", "header"]))
def test_delta(built_delta, data, target):
    d = copy(built_delta)
    try:
        if target == "header":
            mutate_header(data, d / deltastore.TENSORS)
            forge(d, deltastore.MANIFEST)
        else:
            forge(d, deltastore.MANIFEST, lambda m: mutate(data, m))
        outcome(lambda: deltastore.load(d))
        outcome(lambda: api.delta_info(d))
    finally:
        shutil.rmtree(d.parent)


@FAST
@given(data=st.data(), target=st.sampled_from(["state", train_state.PARAMS, train_state.OPTIMIZER,
                                               train_state.METHOD]))
def test_training_state(data, target):
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        path, named, opt = rows.tiny_run(root)
        if target == "state":
            forge(path, train_state.STATE, lambda m: mutate(data, m))
        else:
            mutate_header(data, path / target)
            forge(path, train_state.STATE)
        outcome(lambda: train_state.load(path, named, opt, {"lr": 1}, {}))
    finally:
        shutil.rmtree(root)


@pytest.mark.slow
def test_slow_tier_explores_more():
    import subprocess
    import sys

    env = {**os.environ, "LLMPRESS_FUZZ_EXAMPLES": "1000", "LLMPRESS_FUZZ_RANDOM": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", __file__],
                   env=env, check=True, timeout=3000)


def test_the_bounds_catch_an_oversized_allocation():
    """The guard itself can fail: an allocation past the cap raises, it is not lazily granted."""
    with pytest.raises(RuntimeError, match="allocate"):
        with bounded(BUDGET):
            torch.empty(2 * BUDGET, dtype=torch.uint8)
