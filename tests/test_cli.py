import json

import pytest

from llmpress import api
from llmpress.cli import main
from llmpress.errors import ConfigError


def test_compress_info_eval_through_the_cli(tiny_dir, fake_cache, tmp_path, capsys):
    out = tmp_path / "ck"
    assert main(["compress", "--model", str(tiny_dir), "--method", "rtn", "--bits", "3", "--group-size", "64",
                 "--out", str(out), "--json", str(tmp_path / "c.json")]) == 0
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["bits"] == 3 and 3 < summary["bits_per_weight"] < 3.5
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "method rtn" in text and "model.layers.1.mlp.down_proj" in text
    from llmpress.kernels import packed

    kernel = "native-registers" if packed.available() else "torch-tiles"
    assert "kernels on this CPU" in text and f"gemv: {kernel}" in text  # read from the manifest alone
    assert main(["info", str(out), "--no-layers"]) == 0
    assert "down_proj" not in capsys.readouterr().out
    assert main(["eval", str(out), "--windows", "2", "--seqlen", "64", "--tasks", "piqa,winogrande",
                 "--json", str(tmp_path / "e.json")]) == 0
    assert f"gemv: {kernel}" in capsys.readouterr().out
    res = json.loads((tmp_path / "e.json").read_text())
    assert sum(k["layers"] for k in res["kernels"]) == 14  # 2 layers x 7 linears, all compressed
    p = res["perplexity"]
    assert p["windows"] == 2 and p["tokens"] == 126 and p["ppl"] > 1
    assert res["tasks"]["piqa"]["examples"] == res["tasks"]["winogrande"]["examples"] == 9
    assert 0 <= res["tasks"]["piqa"]["acc_stderr"] <= 0.5 and res["tasks"]["piqa"]["acc_norm"] is not None
    assert res["tasks"]["winogrande"]["acc_norm"] is None  # the harness defines none: one shared continuation
    assert main(["eval", str(out), "--generate", "arithmetic/2_digit_plus", "--limit", "5",
                 "--max-new-tokens", "4", "--json", str(tmp_path / "g.json")]) == 0
    gen = json.loads((tmp_path / "g.json").read_text())
    assert "perplexity" not in gen and gen["generation"]["arithmetic/2_digit_plus"]["examples"] == 5
    direct = api.evaluate(str(out), windows=2, seqlen=64, progress=False)["perplexity"]["ppl"]
    assert direct == p["ppl"]


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "no llmpress.json" in capsys.readouterr().err
    assert main(["compress", "--model", "nope nope", "--out", str(tmp_path / "x")]) == 2
    assert main(["compress", "--method", "magic"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["compress", "--bits", "1"]) == 2
    assert "2..8 bits" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "llmpress", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("llmpress ")


def test_compress_kmeans_through_the_cli(tiny_dir, tmp_path, capsys):
    out = tmp_path / "km"
    assert main(["compress", "--model", str(tiny_dir), "--method", "kmeans", "--bits", "2", "--out", str(out),
                 "--json", str(tmp_path / "k.json")]) == 0
    summary = json.loads((tmp_path / "k.json").read_text())
    assert summary["method"] == "kmeans" and summary["group_size"] == 0
    assert 2 < summary["bits_per_weight"] < 2.1  # 2-bit indices + one 4-entry float16 table per layer
    assert main(["info", str(out)]) == 0
    assert "palette" in capsys.readouterr().out


def test_a_ggml_grid_sets_the_bits_and_reaches_the_manifest(tiny_dir, tmp_path, capsys):
    out = tmp_path / "q4k"
    assert main(["compress", "--model", str(tiny_dir), "--method", "rtn", "--grid", "IQ4_NL", "--out", str(out),
                 "--json", str(tmp_path / "g.json")]) == 0
    summary = json.loads((tmp_path / "g.json").read_text())
    assert summary["bits"] == 4 and summary["grid"] == "IQ4_NL" and summary["bits_per_weight"] == 4.5
    manifest = json.loads((out / "llmpress.json").read_text())
    assert {m["format"] for m in manifest["modules"].values()} == {"ggml"}
    assert {m["type"] for m in manifest["modules"].values()} == {"IQ4_NL"}
    assert main(["info", str(out)]) == 0


def test_finetune_dkm_through_the_cli(tiny_dir, fake_cache, tmp_path, capsys):
    out = tmp_path / "dkm"
    assert main(["finetune", "--model", str(tiny_dir), "--method", "dkm", "--data", "arithmetic", "--steps", "2",
                 "--batch-size", "4", "--seq-len", "24", "--eval-interval", "0", "--eval-examples", "2",
                 "--bits", "2", "--embedding-bits", "4", "--max-iter", "2", "--out", str(out)]) == 0
    assert not (tmp_path / "dkm.train-state").exists()
    info = api.info(out)
    assert info["method"] == "finetune-dkm"
    assert 2 < info["bits_per_weight"] < 2.1 and 4 < info["groups"]["embedding"]["bits_per_weight"] < 4.1
    assert info["groups"]["lm_head"]["bytes"] == 0  # the tied head shares the embedding's palette
    manifest = json.loads((out / "llmpress.json").read_text())
    assert manifest["extra"]["method_settings"]["dkm"]["linear"]["n_bits"] == 2
    p = api.evaluate(str(out), windows=1, seqlen=32, progress=False)["perplexity"]
    assert p["ppl"] > 1
    # Continue DKM from that palette: its tables are the starting centroids, recorded in the run.
    again = tmp_path / "dkm-again"
    assert main(["finetune", "--model", str(tiny_dir), "--method", "dkm", "--data", "arithmetic", "--steps", "1",
                 "--batch-size", "4", "--seq-len", "24", "--eval-interval", "0", "--eval-examples", "2",
                 "--bits", "2", "--embedding-bits", "4", "--max-iter", "2", "--init-from", str(out),
                 "--out", str(again)]) == 0
    settings = json.loads((again / "llmpress.json").read_text())["extra"]["method_settings"]
    assert settings["init_from"] == str(out) and "init_weights" not in settings
    # ... and its decoded weights the starting weights too.
    assert main(["finetune", "--model", str(tiny_dir), "--method", "dkm", "--data", "arithmetic", "--steps", "1",
                 "--batch-size", "4", "--seq-len", "24", "--eval-interval", "0", "--eval-examples", "2",
                 "--bits", "2", "--embedding-bits", "4", "--max-iter", "2", "--init-from", str(out), "--init-weights",
                 "--out", str(tmp_path / "dkm-weights")]) == 0
    settings = json.loads((tmp_path / "dkm-weights" / "llmpress.json").read_text())["extra"]["method_settings"]
    assert settings["init_weights"] is True
    with pytest.raises(ConfigError, match="give init_from"):
        api.finetune(str(tiny_dir), method="dkm", data="arithmetic", init_weights=True, steps=1)
    with pytest.raises(ConfigError, match="init_from starts DKM"):
        api.finetune(str(tiny_dir), method="full", data="arithmetic", init_from=str(out), steps=1)
    # Hessian-weighted DKM calibrates on the wiki train split first and records what it calibrated on.
    weighted = tmp_path / "dkm-hessian"
    assert main(["finetune", "--model", str(tiny_dir), "--method", "dkm", "--data", "arithmetic", "--steps", "1",
                 "--batch-size", "4", "--seq-len", "24", "--eval-interval", "0", "--eval-examples", "2",
                 "--bits", "2", "--embedding-bits", "0", "--max-iter", "2", "--dkm-sensitivity", "hessian",
                 "--calib-samples", "2", "--calib-seqlen", "16", "--out", str(weighted)]) == 0
    settings = json.loads((weighted / "llmpress.json").read_text())["extra"]["method_settings"]
    assert settings["dkm"]["sensitivity"] == "hessian"
    assert settings["calibration"] == {"corpus": "wiki", "split": "train", "samples": 2, "seqlen": 16, "seed": 0}
