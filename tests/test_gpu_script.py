"""benchmarks/gpu.py is ready for a lent GPU: its --smoke run (CPU, Triton's interpreter) completes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
pytest.importorskip("triton", reason="triton is not installed")


def test_smoke_run_writes_every_section_and_renders(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], check=True, env=env,
                   capture_output=True, text=True, timeout=300)
    data = json.loads(out.read_text())
    assert data["smoke"] and data["machine"]["interpreted"] and data["copy_bandwidth_bytes_per_s"] > 0
    kinds = {r["kind"] for r in data["kernels"]}
    assert kinds == {"torch fp16 (cuBLAS)", "palette3", "uniform3-g64", "shiftadd3-lat"}
    assert all(r["rel_error"] < 1e-6 for r in data["kernels"] if "rel_error" in r)
    steps = {r["method"]: r for r in data["dkm_step"]}
    assert steps["(a) marshal"]["host_device_bytes"] > 0 and steps["naive"]["host_device_bytes"] == 0
    assert steps["naive"]["grad_norm"] == pytest.approx(steps["table (ours)"]["grad_norm"], rel=1e-4)
    assert "not_run" in steps["(c) shard"] and "not_run" in data["default_model"]
    table = subprocess.run([sys.executable, str(SCRIPT), "--render", "--out", str(out)], check=True,
                           capture_output=True, text=True).stdout
    assert "| palette3 |" in table and "(a) marshal" in table
