import json

import pytest
import torch

from llmpress import api, checkpoint
from llmpress.cli import main
from llmpress.nn import CompressedLinear, ShiftAddLinear


@pytest.mark.parametrize("method,extra", [
    ("gptq", ["--group-size", "32", "--act-order"]),
    ("gptq", ["--grid", "Q3_K"]),  # llama.cpp's blocks (Q4_0 where the tiny model's widths are not multiples of 256)
    ("shiftadd", ["--mode", "lat", "--row-group", "16"]),
    ("shiftadd", ["--mode", "acc", "--row-group", "16", "--terms", "1"]),
    ("kmeans", ["--group-size", "1", "--sensitivity", "hessian", "--error-feedback"]),
    ("kmeans", ["--group-size", "1", "--sensitivity", "hessian", "--error-feedback", "--refit"]),
    ("kmeans", ["--group-size", "1", "--sensitivity", "hessian", "--error-feedback", "--refine", "2", "--refit"]),
])
def test_calibrated_compress_save_load_same_logits(method, extra, tiny_dir, fake_cache, tmp_path, capsys):
    out = tmp_path / "ck"
    assert main(["compress", "--model", str(tiny_dir), "--method", method, "--bits", "3", *extra,
                 "--calib-samples", "4", "--calib-seqlen", "48", "--out", str(out),
                 "--json", str(tmp_path / "c.json")]) == 0
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["method"] == method and 3 < summary["bits_per_weight"] < 5
    manifest = checkpoint.read_manifest(out)
    assert manifest["extra"]["calibration"]["samples"] == 4
    module = "ShiftAddLinear" if method == "shiftadd" else "CompressedLinear"
    assert {m["module"] for m in manifest["modules"].values()} == {module}
    if method == "shiftadd":
        assert all(m["binary_codes"] for m in manifest["modules"].values())
    # The model in memory and the one loaded back compute the same logits.
    mem = api.compress(str(tiny_dir), method, bits=3, calib_samples=4, calib_seqlen=48, progress=False,
                       **_settings(extra))
    loaded = checkpoint.load(out).model
    x = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, mem.loaded.model(x).logits)
    cls = ShiftAddLinear if method == "shiftadd" else CompressedLinear
    assert isinstance(loaded.model.layers[0].mlp.down_proj, cls)


def _settings(args: list[str]) -> dict:
    out, i = {}, 0
    while i < len(args):
        key = args[i][2:].replace("-", "_")
        if key in ("act_order", "error_feedback", "refit"):
            out[key], i = True, i + 1
        else:
            val = args[i + 1]
            out[key], i = (int(val) if val.isdigit() else val), i + 2
    return out


def test_mixed_precision_prints_the_allocation(tiny_dir, fake_cache, tmp_path, capsys):
    assert main(["compress", "--model", str(tiny_dir), "--method", "shiftadd", "--mode", "lat", "--row-group", "16",
                 "--avg-bits", "2.6", "--calib-samples", "4", "--calib-seqlen", "48",
                 "--json", str(tmp_path / "c.json")]) == 0
    text = capsys.readouterr().out
    assert "sensitivity" in text and "model.layers.1.mlp.down_proj" in text
    assert "scales rounded to powers of two: relative weight error" in text
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["bits_per_weight"] <= 2.6


def test_calibrated_bad_input(tiny_dir, fake_cache, tmp_path, capsys):
    # 96-row q projections cannot be split in groups of 40 rows (checked before any calibration)
    assert main(["compress", "--model", str(tiny_dir), "--method", "shiftadd", "--row-group", "40",
                 "--calib-samples", "4", "--calib-seqlen", "48"]) == 2
    assert "q_proj: row_group 40 does not divide its 96 output rows" in capsys.readouterr().err
    assert main(["compress", "--model", str(tiny_dir), "--method", "gptq", "--calib-samples", "1",
                 "--calib-seqlen", "16"]) == 2
    err = capsys.readouterr().err
    assert "calibration tokens" in err and "down_proj" in err
    assert main(["compress", "--model", str(tiny_dir), "--method", "shiftadd", "--bits", "9"]) == 2
    assert "1..8" in capsys.readouterr().err
