"""Reading the results JSON into figure data: no matplotlib involved."""

import json
from pathlib import Path

import pytest

from llmpress.errors import LlmpressError
from llmpress.plots import sources

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def test_every_committed_results_file_feeds_a_figure_or_is_skipped_with_a_reason():
    assert sorted(RESULTS.glob("*.json")), "no committed results found"
    assert sources.unplaced(RESULTS) == []
    assert all(reason.strip() for reason in sources.SKIPPED.values())


def test_unknown_results_file_is_reported(tmp_path):
    (tmp_path / "mystery.json").write_text("{}")
    (tmp_path / "baseline.json").write_text("{}")
    assert sources.unplaced(tmp_path) == ["mystery.json"]


def test_ppl_points_gather_every_registered_source_and_keep_the_first_of_a_repeat(tmp_path):
    def row(method, bits, ppl):
        return {"method": method, "bits_per_weight": bits, "ppl_quick": {"ppl": ppl, "windows": 32}}

    (tmp_path / "baseline.json").write_text(json.dumps({"rows": [
        row("fp32", 32.0, 15.4), row("rtn 3-bit g64", 3.3, 46.5),
        {"method": "rtn 4-bit g64", "bits_per_weight": 4.3},  # no perplexity: passed over
    ]}))
    # A lighter writer may store the perplexity as a bare number; its repeat of a baseline row loses.
    (tmp_path / "dkm_train.json").write_text(json.dumps({"rows": [
        row("rtn 3-bit g64", 3.3, 99.0),
        {"method": "dkm 3-bit", "bits_per_weight": 3.1, "ppl_quick": 30.0, "ppl_full": 33.0}]}))
    (tmp_path / "shiftadd.json").write_text(json.dumps({"rows": [row("shiftadd acc 2-bit", 2.2, 970.0)]}))
    points = sources.ppl_points(tmp_path)
    assert [(p.source, p.method, p.ppl) for p in points] == [
        ("baseline", "fp32", 15.4), ("baseline", "rtn 3-bit g64", 46.5), ("dkm_train", "dkm 3-bit", 30.0)]
    assert sources.unplaced(tmp_path) == ["shiftadd.json"]  # its rows moved into baseline.json


def test_a_new_benchmark_joins_the_ppl_figure_with_one_registry_entry(tmp_path, monkeypatch):
    (tmp_path / "newbench.json").write_text(json.dumps({"rows": [
        {"method": "new 2-bit", "bits_per_weight": 2.0, "ppl_quick": {"ppl": 50.0}}]}))
    assert sources.unplaced(tmp_path) == ["newbench.json"]
    monkeypatch.setitem(sources.PPL_SOURCES, "newbench", sources.rows_with_ppl)
    assert sources.unplaced(tmp_path) == []
    assert [p.method for p in sources.ppl_points(tmp_path)] == ["new 2-bit"]


def test_missing_files_give_no_points_and_bad_json_names_the_file(tmp_path):
    assert sources.ppl_points(tmp_path) == []
    (tmp_path / "dkm_train.json").write_text("{not json")
    with pytest.raises(LlmpressError, match="dkm_train.json is not valid JSON"):
        sources.ppl_points(tmp_path)


@pytest.mark.parametrize("method, family, setting", [
    ("rtn 3-bit g64", "rtn g64", "3-bit"),
    ("gptq 2-bit g64", "gptq g64", "2-bit"),
    ("shiftadd lat mixed 2.2", "shiftadd lat", "mixed 2.2"),
    ("shiftadd acc 3-bit", "shiftadd acc", "3-bit"),
    ("fp32", "fp32", ""),
])
def test_family_and_setting_split_a_method_label(method, family, setting):
    assert (sources.family(method), sources.setting(method)) == (family, setting)


def test_delta_series_from_the_committed_json():
    refs, series = sources.delta_series(sources.load(RESULTS, sources.DELTA_SOURCE))
    assert set(refs) == {"base", "fine-tune"} and refs["base"] < refs["fine-tune"]
    assert {"deltadq", "dare", "bitdelta"} <= set(series)
    for pts in series.values():
        ratios = [x for x, _ in pts]
        assert ratios == sorted(ratios) and all(0 <= em <= 1 for _, em in pts)
    assert len(series["deltadq"]) == 3 and 15.8 < series["deltadq"][0][0] < 16  # 16x, 128x, 256x


def test_memory_bars_are_reductions_against_the_measured_naive_row():
    bars = {m: (r, kept) for m, r, kept in sources.memory_bars(sources.load(RESULTS, sources.MEMORY_SOURCE))}
    assert bars["naive"][0] == 1.0
    assert bars["table (ours)"][1] == 32 and bars["table (ours)"][0] > 1e8
    assert 300 < bars["(a)+(b)+(c), 2 ranks"][0] < 340  # BENCHMARKS.md: 319.5x over a decoder layer
    assert set(bars) == {"naive", "(a) marshal", "(b) unique", "(c) shard, 2 ranks", "(a)+(b)+(c), 2 ranks",
                         "table (ours)"}


def test_memory_bars_without_a_naive_row_say_so():
    data = {"rows": [{"method": "(b) unique", "shape": "4096x4096", "measured": True, "saved": {"kept_bytes": 8}}]}
    with pytest.raises(LlmpressError, match="no measured naive row"):
        sources.memory_bars(data)
