"""Every verb given wrong values: exit status 2 and one line naming the problem, no traceback.

Each row is (argv with placeholders, a pattern the one-line message must match). Placeholders:
{tiny} a float model directory, {ck} its 3-bit RTN checkpoint, {nan} a model with a NaN weight,
{other} a model of another shape, {delta} a delta over {tiny}, {tmp} a scratch folder.
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from llmpress.cli import main

ROWS = {
    # compress
    "bits too low": ("compress --model {tiny} --bits 1 --out {tmp}/a", "2..8 bits"),
    "bits too high": ("compress --model {tiny} --bits 9 --out {tmp}/a", "2..8 bits"),
    "negative group": ("compress --model {tiny} --group-size -8 --out {tmp}/a", "group_size"),
    "unknown method": ("compress --model {tiny} --method magic --out {tmp}/a", "unknown method"),
    "missing model": ("compress --model {tmp}/nowhere --out {tmp}/a", "nowhere"),
    "output exists": ("compress --model {tiny} --out {ck}", "already exists.*--overwrite"),
    "NaN weights": ("compress --model {nan} --out {tmp}/a", "not finite|NaN"),
    "kmeans bits": ("compress --model {tiny} --method kmeans --bits 0 --out {tmp}/a", "bits"),
    "shiftadd row group": ("compress --model {tiny} --method shiftadd --row-group 7 --out {tmp}/a", "row"),
    "already compressed": ("compress --model {ck} --out {tmp}/a", "no nn.Linear"),
    "calib samples": ("compress --model {tiny} --method gptq --calib-samples 0 --out {tmp}/a", "calib|samples"),
    "unknown grid": ("compress --model {tiny} --grid Q5_K --out {tmp}/a", "unknown ggml grid 'Q5_K'"),
    "fallback as grid": ("compress --model {tiny} --grid Q4_0 --out {tmp}/a", "unknown ggml grid 'Q4_0'"),
    "grid of other bits": ("compress --model {tiny} --grid Q3_K --bits 4 --out {tmp}/a", "holds 3-bit codes"),
    "grid for kmeans": ("compress --model {tiny} --method kmeans --grid Q3_K --out {tmp}/a", "kmeans has no grid"),
    "grid and groups": ("compress --model {tiny} --grid Q4_K --group-size 32 --out {tmp}/a", "fixes the groups"),
    "no GPU": ("compress --model {tiny} --device cuda --out {tmp}/a", "sees no CUDA GPU|GPU"),
    "unknown device": ("compress --model {tiny} --device tpu --out {tmp}/a", "device 'tpu'"),
    # finetune
    "zero steps": ("finetune --model {tiny} --steps 0 --out {tmp}/f", "steps"),
    "negative lr": ("finetune --model {tiny} --lr -1 --out {tmp}/f", "lr"),
    "unknown data": ("finetune --model {tiny} --data poems --out {tmp}/f", "poems"),
    "unknown finetune method": ("finetune --model {tiny} --method lora --out {tmp}/f", "lora"),
    "dkm bits": ("finetune --model {tiny} --method dkm --bits 12 --out {tmp}/f", "bits"),
    # eval
    "eval missing model": ("eval {tmp}/nowhere --windows 1", "nowhere"),
    "unknown profile": ("eval {ck} --profile huge", "profile"),
    "unknown task": ("eval {ck} --tasks chess", "chess"),
    "zero windows": ("eval {ck} --windows 0 --seqlen 64", "--windows must be at least 1"),
    "corpus file missing": ("eval {ck} --corpus file:{tmp}/none.txt --windows 1", "none.txt"),
    "eval on no GPU": ("eval {ck} --windows 1 --device cuda:3", "GPU"),
    # info
    "info of nothing": ("info {tmp}/nowhere", "nowhere"),
    "info of a file": ("info {tiny}/config.json", "not a directory"),
    "info of a transformers folder": ("info {tmp}", "no llmpress.json"),
    # delta
    "delta ratio zero": ("delta compress --base {tiny} --finetuned {tiny} --ratio 0 --out {tmp}/d", "ratio"),
    "delta ratio NaN": ("delta compress --base {tiny} --finetuned {tiny} --ratio nan --out {tmp}/d", "ratio"),
    "delta unknown method": ("delta compress --base {tiny} --finetuned {tiny} --method zip --out {tmp}/d", "zip"),
    "delta of another shape": ("delta compress --base {tiny} --finetuned {other} --out {tmp}/d", "shape|differ"),
    "delta for another base": ("delta apply --base {other} --delta {delta} --out {tmp}/x", "base"),
    "delta info of nothing": ("delta info {tmp}", "delta.json"),
}


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_tokenizer):
    from llmpress import checkpoint
    from llmpress.methods.rtn import RTNConfig
    from llmpress.models.compress import compress_model
    from tests.conftest import make_model

    root = tmp_path_factory.mktemp("bad-input")
    model = make_model(len(tiny_tokenizer))
    tiny = checkpoint.save(model, root / "tiny", tokenizer=tiny_tokenizer)
    nan = copy.deepcopy(model)
    with torch.no_grad():
        nan.model.layers[0].mlp.up_proj.weight[0, 0] = math.nan
    nan = checkpoint.save(nan, root / "nan", tokenizer=tiny_tokenizer)
    other = checkpoint.save(make_model(len(tiny_tokenizer), hidden=64, intermediate=128), root / "other",
                            tokenizer=tiny_tokenizer)
    compress_model(model, "rtn", RTNConfig(bits=3, group_size=32), progress=False)
    ck = checkpoint.save(model, root / "ck", tokenizer=tiny_tokenizer)
    return {"tiny": tiny, "ck": ck, "nan": nan, "other": other, "root": root}


@pytest.fixture(scope="module")
def delta(places, tiny_tokenizer):
    from llmpress import deltastore
    from llmpress.methods.deltadq import DeltaDQConfig
    from llmpress.models import delta as dm
    from tests.conftest import make_model
    from tests.models.test_delta import finetune_of, ids

    base = make_model(len(tiny_tokenizer))
    d = dm.compress(base, finetune_of(base), "deltadq", DeltaDQConfig(ratio=8, group_sizes=(16, 32)), ids(),
                    progress=False)
    d.base_hash = deltastore.model_hash(__import__("llmpress").checkpoint.load(places["tiny"]).model)
    return deltastore.save(d, places["root"] / "delta")


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_is_one_line_and_exit_2(row, places, delta, fake_cache, tmp_path, capsys):
    argv, pattern = ROWS[row]
    args = argv.format(tmp=tmp_path, delta=delta, **{k: v for k, v in places.items() if k != "root"}).split()
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code}: {err[-500:]}"
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("llmpress:")]
    assert "Traceback" not in err and len(lines) == 1, err  # progress bars may precede the one line
    assert re.search(pattern, lines[0], re.I), lines[0]


def test_an_unforeseen_error_is_one_line_unless_debug(places, monkeypatch, capsys):
    from llmpress import api

    def broken(path):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(api, "info", broken)
    assert main(["info", str(places["ck"])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: division by zero (run with --debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info", str(places["ck"])])
