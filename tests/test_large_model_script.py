"""benchmarks/large_model.py on a model of a few MB (--smoke): writes the sharded model, runs every
row in its own process layer by layer, and its checkpoint loads back."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "large_model.py"


def test_smoke_run_measures_every_row_and_renders(tmp_path):
    out = tmp_path / "large.json"
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out), "--samples", "4", "--seqlen", "128"],
                   check=True, capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text())
    rows = {r["row"]: r for r in data["rows"]}
    assert set(rows) == {"rtn 3-bit g128", "gptq 3-bit g128", "kmeans 3-bit per-row"}
    assert data["model"]["config"]["num_hidden_layers"] == 3 and data["model"]["total_size"] > 0
    rtn = rows["rtn 3-bit g128"]
    assert rtn["layers_run"] == 3 and len(rtn["layer_seconds"]) == 3 and rtn["checkpoint_bytes"] > 0
    assert rtn["stored"]["compressed"]["bits_per_weight"] > 3
    assert rows["gptq 3-bit g128"]["layers_run"] == 2 and rows["gptq 3-bit g128"]["calibration"]["samples"] == 4
    assert all(r["peak_rss_mb"] >= max(r["rss_mb_after_layer"]) > 0 for r in rows.values())
    table = subprocess.run([sys.executable, str(SCRIPT), "--render", "--json", str(out)], check=True,
                           capture_output=True, text=True).stdout
    assert "| gptq 3-bit g128 | 4 x 128 | 2/3 |" in table and "extrapolated" in table
