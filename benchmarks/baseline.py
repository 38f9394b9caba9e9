"""Re-baseline of every post-training method on DESIGN.md's revised protocol (wiki corpus, pinned tasks).

    python benchmarks/baseline.py                       # every row not yet in results/baseline.json
    python benchmarks/baseline.py --rows fp32 "rtn 3-bit g64"
    python benchmarks/baseline.py --render              # the BENCHMARKS.md table from the JSON

Each row: compression (bits per weight of the linear layers, size on disk, seconds), quick-profile
perplexity on the wiki test split and zero-shot piqa / winogrande / arc_easy (all examples, each
with its standard error); the best row under 4 bits of each method adds the full profile (measured
last, recompressing it); the fp32 row adds the full profile, arc_challenge and hellaswag (first
1,000 of 10,042: the whole set is ~40k requests, 20+ minutes on 2 cores). Rows are written to the
JSON as each finishes, so an interrupted run resumes where it stopped. Calibrated methods use the
quick calibration profile (32 x 512 tokens of the train split, seed 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import protocol  # benchmarks/ is this script's directory, so on sys.path
from llmpress import api
from llmpress.data.tasks import task
from llmpress.models.storage import storage_report

RESULTS = Path(__file__).parent / "results" / "baseline.json"
TASKS = protocol.TASKS
CALIB = dict(calib_samples=32, calib_seqlen=512)
PER_ROW = dict(group_size=1)  # one palette per output channel, as the k-means rows before the corpus change
HESSIAN = dict(sensitivity="hessian", **CALIB)
SHIFTADD = {"acc": dict(mode="acc", row_group=192, terms=2), "lat": dict(mode="lat", row_group=32, terms=2)}

# label -> (method, settings); group 64 because the default model's 576-wide layers are 9 x 64 (DESIGN.md)
ROWS: dict[str, tuple[str, dict]] = {
    "fp32": ("none", {}),
    **{f"rtn {b}-bit g64": ("rtn", {"bits": b, "group_size": 64}) for b in (8, 4, 3, 2)},
    "gptq 3-bit g64 act-order": ("gptq", {"bits": 3, "group_size": 64, "act_order": True, **CALIB}),
    "gptq 3-bit g64 in order": ("gptq", {"bits": 3, "group_size": 64, "act_order": False, **CALIB}),
    "gptq 2-bit g64 act-order": ("gptq", {"bits": 2, "group_size": 64, "act_order": True, **CALIB}),
    "gptq 2-bit g64 in order": ("gptq", {"bits": 2, "group_size": 64, "act_order": False, **CALIB}),
    "kmeans 3-bit per-row": ("kmeans", {"bits": 3, **PER_ROW}),
    "kmeans 2-bit per-row": ("kmeans", {"bits": 2, **PER_ROW}),
    "kmeans 3-bit per-row hessian": ("kmeans", {"bits": 3, **PER_ROW, **HESSIAN}),
    "kmeans 3-bit per-row hessian error-feedback": ("kmeans", {"bits": 3, **PER_ROW, **HESSIAN, "error_feedback": True}),
    "kmeans 3-bit per-row hessian error-feedback refined": (
        "kmeans", {"bits": 3, **PER_ROW, **HESSIAN, "error_feedback": True, "refine": 4, "refit": True}),
    "kmeans 2-bit per-row hessian error-feedback refined": (
        "kmeans", {"bits": 2, **PER_ROW, **HESSIAN, "error_feedback": True, "refine": 4, "refit": True}),
    # ShiftAddLLM: "acc" shares scales per column over 192 rows, "lat" per 8-column block over 32 rows
    # (the shapes the kernels in benchmarks/shiftadd_kernel.py run); 2 power-of-two terms per scale
    **{f"shiftadd {m} {b}-bit": ("shiftadd", {"bits": b, **SHIFTADD[m], **CALIB}) for b in (3, 2) for m in ("acc", "lat")},
    "shiftadd lat mixed 2.2": ("shiftadd", {"bits": 2, "avg_bits": 2.2, **SHIFTADD["lat"], **CALIB}),
}


def compressed(label: str):
    """(model, row fields) for one row, the model compressed in place from a fresh load."""
    method, settings = ROWS[label]
    base = api.load("default")
    if method == "none":
        return base, dict(bits_per_weight=32.0, compress_seconds=0.0,
                          size_mb=storage_report(base.model, storage_dtype=torch.float32)["total_bytes"] / 1e6)
    r = api.compress(base, method, copy_model=False, **settings)
    s = r.summary()
    return r.loaded, dict(bits_per_weight=s["bits_per_weight"], size_mb=s["size_mb"], compress_seconds=r.seconds)


def measured_row(label: str) -> dict:
    """The committed row ``label`` of results/baseline.json, for benchmarks that compare against it."""
    rows = {r["method"]: r for r in json.loads(RESULTS.read_text())["rows"]}
    if label not in rows:
        raise SystemExit(f"{RESULTS} has no row {label!r}; run benchmarks/baseline.py first")
    return rows[label]


def best_below_4_bits(rows: list[dict]) -> list[str]:
    """Per method (the label's first word), the row with the lowest quick perplexity under 4 bits per
    weight: the row that gets the full profile too. 3 and 2 bits are what this project is for; 8- and
    4-bit RTN are within 30% of fp32 and would always win."""
    best: dict[str, dict] = {}
    for r in rows:
        family = r["method"].split()[0]
        if r["bits_per_weight"] < 4 and (family not in best or r["ppl_quick"]["ppl"] < best[family]["ppl_quick"]["ppl"]):
            best[family] = r
    return [r["method"] for r in best.values()]


def measure(label: str) -> dict:
    method, settings = ROWS[label]
    lm, fields = compressed(label)
    row: dict = {"method": label, "settings": settings, **fields}
    profiles = ("quick", "full") if method == "none" else ("quick",)
    for profile in profiles:
        row[f"ppl_{profile}"] = api.evaluate(lm, profile=profile)["perplexity"]
    row["tasks"] = api.evaluate(lm, ppl=False, tasks=list(TASKS))["tasks"]
    if method == "none":
        row["tasks"].update(api.evaluate(lm, ppl=False, tasks=["arc_challenge"])["tasks"])
        row["tasks"]["hellaswag"] = api.evaluate(lm, ppl=False, tasks=["hellaswag"], limit=1000)["tasks"]["hellaswag"]
    return row


HEAD = ["method", "bits/weight", "size MB", *protocol.SCORE_HEAD]


def cells(r: dict) -> list[str]:
    """One row of the table: what it stores, then its scores."""
    return [r["method"], f"{r['bits_per_weight']:.3f}", f"{r['size_mb']:.1f}", *protocol.score_cells(r)]


def markdown(rows: list[dict]) -> str:
    return protocol.table(HEAD, [cells(r) for r in rows])


def reference_tasks_markdown(rows: list[dict]) -> str:
    """Every task the fp32 row was scored on, with its example count: the reference for later issues.
    acc_norm only where the harness defines it (not Winogrande, whose choices share one continuation)."""
    tasks = next(r for r in rows if r["method"] == "fp32")["tasks"]
    lines = ["| task | examples | acc | acc_norm |", "|---|---|---|---|"]
    for t, m in sorted(tasks.items()):
        norm = f"{m['acc_norm']:.3f} ± {m['acc_norm_stderr']:.3f}" if "acc_norm" in task(t).metrics else "-"
        lines.append(f"| {t} | {m['examples']} | {m['acc']:.3f} ± {m['acc_stderr']:.3f} | {norm} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to (re)measure (default: those missing)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {
        "benchmark": "baseline", "model": protocol.MODEL, "corpus": protocol.CORPUS, "tasks": protocol.TASK_SOURCE,
        "calibration": "wiki train split, 32 x 512 tokens, seed 0 (calibrated methods)",
        "notes": "size_mb counts every stored byte (codes, tables, scales; embedding and norms fp16; lm_head "
                 "tied). bits_per_weight counts the compressed linear layers only.", "runs": [], "rows": []}
    if args.render:
        print(markdown(data["rows"]) + "\n\n" + reference_tasks_markdown(data["rows"]))
        return
    todo = args.rows or [label for label in ROWS if label not in {r["method"] for r in data["rows"]}]
    for label in todo:
        start = time.time()
        row = measure(label)
        row["wall_seconds"] = time.time() - start
        data["rows"] = [r for r in data["rows"] if r["method"] != label] + [row]
        data["rows"].sort(key=lambda r: list(ROWS).index(r["method"]))
        data["runs"].append(protocol.run_record("row", [label]))
        api.write_json(out, data)  # after every row: a stopped run keeps what it measured
        print(markdown([row]), flush=True)
    for label in best_below_4_bits(data["rows"]):
        row = next(r for r in data["rows"] if r["method"] == label)
        if "ppl_full" not in row:
            row["ppl_full"] = api.evaluate(compressed(label)[0], profile="full")["perplexity"]
            data["runs"].append(protocol.run_record("ppl_full", [label]))
            api.write_json(out, data)
            print(f"{label}: full-profile ppl {row['ppl_full']['ppl']:.2f}", flush=True)


if __name__ == "__main__":
    main()
