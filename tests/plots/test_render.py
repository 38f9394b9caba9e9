"""`llmpress bench plot`: PNGs from results JSON, fake and committed."""

import json
import re
import sys
from pathlib import Path

import pytest

from llmpress.cli import main
from llmpress.errors import LlmpressError
from llmpress.plots import DELTA_PNG, MEMORY_PNG, PPL_PNG, render

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_results(path: Path) -> Path:
    path.mkdir()

    def row(method, bits, ppl):
        return {"method": method, "bits_per_weight": bits, "ppl_quick": {"ppl": ppl}}

    (path / "baseline.json").write_text(json.dumps({"rows": [
        row("fp32", 32.0, 15.4), row("rtn 3-bit g64", 3.3, 46.5), row("rtn 2-bit g64", 2.3, 4e5)]}))
    (path / "dkm_train.json").write_text(json.dumps({"rows": [row("dkm 3-bit", 3.1, 30.0), row("dkm 2-bit", 2.1, 90.0)]}))

    def delta(method, ratio, em):
        return {"method": method, "exact_match": {"exact_match": em}, "accounting": {"tensor_ratio": ratio}}

    (path / "deltadq.json").write_text(json.dumps({"rows": {
        "base": {"method": "none", "exact_match": {"exact_match": 0.0}},
        "fine-tune": {"method": "none", "exact_match": {"exact_match": 0.4}},
        "deltadq 8x": delta("deltadq", 7.98, 0.38), "deltadq 64x": delta("deltadq", 62.7, 0.36),
        "dare 8x": delta("dare", 7.98, 0.38), "dare 64x": delta("dare", 62.7, 0.37)}}))

    def mem(method, kept):
        return {"method": method, "shape": "4096x4096", "measured": True, "saved": {"kept_bytes": kept}}

    (path / "dkm_memory.json").write_text(json.dumps({"step": {"n_bits": 3}, "rows": [
        mem("naive", 5_000_000_000), mem("(b) unique", 30_000_000), mem("table (ours)", 32),
        {**mem("naive", 9e9), "shape": "11008x4096", "measured": False}]}))
    return path


def assert_pngs(written, out):
    assert sorted(p.name for p in written) == sorted([PPL_PNG, DELTA_PNG, MEMORY_PNG])
    for p in written:
        assert p.parent == out and p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000


def test_render_fake_results_writes_every_figure_reproducibly(tmp_path):
    results = fake_results(tmp_path / "results")
    written, notes = render(results, tmp_path / "a")
    assert_pngs(written, tmp_path / "a")
    assert notes == []
    again, _ = render(results, tmp_path / "b")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]


def test_render_with_only_some_results_draws_what_it_can(tmp_path):
    results = fake_results(tmp_path / "results")
    for name in ("deltadq.json", "dkm_memory.json", "dkm_train.json"):
        (results / name).unlink()
    (results / "mystery.json").write_text("{}")
    written, notes = render(results, tmp_path / "out")
    assert [p.name for p in written] == [PPL_PNG]
    assert any(n.startswith("mystery.json: no figure reads it") for n in notes)
    assert sorted(n for n in notes if "not found, skipped" in n) == [
        f"{name}: not found, skipped" for name in ("deltadq.json", "dkm_memory.json", "dkm_train.json")]


def test_committed_results_render_and_their_figures_are_committed_and_embedded(tmp_path):
    written, notes = render(REPO / "benchmarks" / "results", tmp_path)
    assert written and all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    assert all("not found, skipped" in n for n in notes)  # only benchmarks not yet run (re)measured
    benchmarks_md = (REPO / "BENCHMARKS.md").read_text()
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", benchmarks_md)
    assert sorted(Path(e).name for e in embedded) == sorted(p.name for p in written)
    for e in embedded:
        assert (REPO / e).is_file(), f"BENCHMARKS.md embeds {e}, which is not committed"
    committed = sorted(p.name for p in (REPO / "benchmarks" / "plots").glob("*.png"))
    assert committed == sorted(p.name for p in written)  # no figure left over from results that are gone


def test_cli_bench_plot(tmp_path, capsys):
    results = fake_results(tmp_path / "results")
    (results / "deltadq.json").unlink()
    assert main(["bench", "plot", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "note: deltadq.json: not found, skipped" in out and f"wrote {tmp_path / 'out' / PPL_PNG}" in out
    assert main(["bench", "plot", "--results", str(tmp_path / "nope")]) == 2
    assert "no results directory" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(LlmpressError, match=r"pip install 'llmpress\[plot\]'"):
        render(fake_results(tmp_path / "results"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
