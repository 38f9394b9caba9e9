from llmpress import api
from llmpress.cli import format_table


def test_demo_rows_run_on_a_tiny_model(tiny_dir, fake_cache):
    # the demo's own rows and settings, with calibration and windows shrunk to the tiny corpus
    rows = tuple((label, method, {**s, "calib_samples": 4, "calib_seqlen": 48} if "calib_samples" in s else s)
                 for label, method, s in api.DEMO_ROWS)
    table = api.demo(tiny_dir, rows=rows, seqlen=64, progress=False)
    assert [r["method"] for r in table] == ["fp32"] + [label for label, _, _ in api.DEMO_ROWS]
    assert table[0]["bits/weight"] == 32.0 and table[0]["compress s"] == 0.0
    for r in table[1:]:
        # 3-bit codes plus scales or palettes, a larger share on the tiny model's 96-wide rows
        assert 3 < r["bits/weight"] < 5 and r["size MB"] < table[0]["size MB"] and r["compress s"] > 0
    assert all(r["ppl"] > 1 and r["seqlen"] == 64 and r["windows"] >= 1 and r["tokens"] == 63 * r["windows"]
               for r in table)
    assert len({r["ppl"] for r in table}) == len(table)  # every row measured its own model
    assert "kmeans 3-bit per-row hessian error-feedback" in format_table(table)
