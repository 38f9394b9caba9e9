"""ShiftAddLLM against RTN and GPTQ on the default model (issue 5).

    python benchmarks/shiftadd.py                       # writes benchmarks/results/shiftadd.json, row by row
    python benchmarks/shiftadd.py --full "gptq 3-bit g64,shiftadd acc 3-bit"   # + full-profile perplexity
    python benchmarks/shiftadd.py --tasks piqa --limit 500               # + zero-shot accuracy
    python benchmarks/shiftadd.py --render              # prints the BENCHMARKS.md table from that JSON

Rows: RTN and GPTQ (group 64; GPTQ also with act order), ShiftAdd "lat" (scales per 8-column
block and 32 rows) and "acc" (scales per column and 192 rows), all at 3 and 2 bits, and ShiftAdd
"lat" with automated 2/3/4-bit allocation under 2.2 average stored bits. Scales are additive
powers of two with 2 terms; ShiftAdd visits columns in act order (its default).
Calibration: the quick profile, 32 windows x 512 tokens of the wiki train split, seed 0.

Each row is compressed once (bits/weight, wall seconds of calibration + quantization), saved
under ``--work``, and evaluated on the quick profile (first 32 windows of 2048 tokens of wiki
test). ShiftAdd rows carry the revision of the quantizer that made them (:data:`REVISION`); a
row from an older revision is moved to ``superseded`` and measured again. The JSON is rewritten
after every measurement; a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmpress import api

import revisions  # benchmarks/revisions.py (a script directory: its own modules import by name)

RESULTS = Path(__file__).parent / "results" / "shiftadd.json"
SEQLEN, QUICK = 2048, 32
CALIB = {"calib_samples": 32, "calib_seqlen": 512, "calib_seed": 0}
LAT = {"mode": "lat", "row_group": 32, "terms": 2}
ACC = {"mode": "acc", "row_group": 192, "terms": 2}
# 1: BCQ from the greedy start only, columns in their own order (session 9).
# 2: BCQ refined from the greedy and from a uniform-grid start (the better kept), act order,
#    scales shared by several columns ("lat") fit with each column's GPTQ error cost as weight.
REVISION = 2

# (label, method, settings), in the order they run: the comparisons the issue asks for first.
ROWS = [
    ("gptq 3-bit g64", "gptq", {"bits": 3, "group_size": 64}),
    ("shiftadd acc 3-bit", "shiftadd", {"bits": 3, **ACC}),
    ("gptq 3-bit g64 act-order", "gptq", {"bits": 3, "group_size": 64, "act_order": True}),
    ("gptq 2-bit g64", "gptq", {"bits": 2, "group_size": 64}),
    ("shiftadd acc 2-bit", "shiftadd", {"bits": 2, **ACC}),
    ("gptq 2-bit g64 act-order", "gptq", {"bits": 2, "group_size": 64, "act_order": True}),
    ("shiftadd lat 2-bit", "shiftadd", {"bits": 2, **LAT}),
    ("shiftadd lat mixed 2.2", "shiftadd", {"bits": 2, "avg_bits": 2.2, **LAT}),
    ("shiftadd lat 3-bit", "shiftadd", {"bits": 3, **LAT}),
    # what act order adds on its own (the uniform start without it)
    ("shiftadd acc 3-bit no act-order", "shiftadd", {"bits": 3, "act_order": False, **ACC}),
    ("rtn 3-bit g64", "rtn", {"bits": 3, "group_size": 64}),
    ("rtn 2-bit g64", "rtn", {"bits": 2, "group_size": 64}),
]


def current(row: dict) -> bool:
    return not row["method"].startswith("shiftadd") or row.get("revision") == REVISION


def _ppl(row: dict, key: str) -> str:
    v = row.get(key)
    return "-" if v is None else f"{v['ppl']:.2f}" if v["ppl"] < 1e4 else f"{v['ppl']:.4g}"


def markdown(rows: list[dict]) -> str:
    lines = ["| method | bits/weight (linear layers) | compress s | ppl quick (32 windows) | ppl full (104 windows) "
             "| piqa acc / acc_norm |", "|---|---|---|---|---|---|"]
    order = {label: i for i, (label, _, _) in enumerate(ROWS)}
    for r in sorted(rows, key=lambda r: order.get(r["method"], len(order))):
        task = r.get("tasks", {}).get("piqa")
        acc = f"{task['acc']:.3f} / {task['acc_norm']:.3f} ({task['examples']})" if task else "-"
        lines.append(f"| {r['method']} | {r['bits_per_weight']:.3f} | {r['compress_seconds']:.0f} | "
                     f"{_ppl(r, 'ppl_quick')} | {_ppl(r, 'ppl_full')} | {acc} |")
    return "\n".join(lines)


def slug(label: str) -> str:
    return label.replace(" ", "_").replace(".", "p")


def pooled(a: dict, b: dict) -> dict:
    """Perplexity over the windows of ``a`` and ``b`` together: token-weighted mean NLL."""
    tokens = a["tokens"] + b["tokens"]
    nll = (a["nll"] * a["tokens"] + b["nll"] * b["tokens"]) / tokens
    return {"ppl": math.exp(nll), "nll": nll, "seqlen": a["seqlen"], "windows": a["windows"] + b["windows"],
            "tokens": tokens, "seconds": a["seconds"] + b["seconds"], "total_windows": a["total_windows"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default="/tmp/llmpress-shiftadd-bench", help="where the checkpoints go")
    ap.add_argument("--only", default="", help="comma-separated row labels to compress and evaluate (default: all)")
    ap.add_argument("--full", default="", help="comma-separated row labels that also get the full profile")
    ap.add_argument("--tasks", default="", help="zero-shot tasks for every row with a checkpoint, e.g. piqa,winogrande,arc_easy")
    ap.add_argument("--limit", type=int, help="first N examples of each task")
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    if args.render:
        data = json.loads(out.read_text())
        print(markdown([r for r in data["rows"] if current(r)]))
        for task, r in data.get("fp32_tasks", {}).items():
            print(f"\nfp32 on the same {r['examples']} {task} examples: acc {r['acc']:.3f}, acc_norm {r['acc_norm']:.3f}")
        return
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    revisions.retire(data, current)  # rows of an older quantizer are measured again
    data.update({"benchmark": "shiftadd", "model": "default (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)",
                 "corpus": "wiki test", "calibration": {"corpus": "wiki train", **CALIB},
                 "command": "python " + " ".join(sys.argv), "machine": api.machine(), "revision": REVISION,
                 "commands": data.get("commands", []) + ["python " + " ".join(sys.argv)],
                 "notes": "bits_per_weight counts every stored byte of the 210 compressed decoder linears "
                          "(codes/bit-planes, scales, zeros or exponents and signs). compress_seconds is "
                          "wall time of calibration + quantization on a 2-core machine. superseded: rows "
                          "made by an older revision of the ShiftAdd quantizer (see REVISION)."})
    only = {x for x in args.only.split(",") if x}
    by_label = {r["method"]: r for r in data["rows"]}
    base = api.load("default")
    for label, method, settings in ROWS:
        if label in by_label or (only and label not in only):
            continue
        r = api.compress(base, method, out=work / slug(label), overwrite=True, copy_model=True, **CALIB, **settings)
        s = r.summary()
        row = {"method": label, "settings": r.config, "bits_per_weight": s["bits_per_weight"],
               "model_bits_per_weight": s["model_bits_per_weight"], "size_mb": s["size_mb"],
               "compress_seconds": r.seconds, "checkpoint": str(r.path)}
        if method == "shiftadd":
            row["revision"] = REVISION
        if "allocation" in r.extra:
            row["allocation"] = r.extra["allocation"]
            row["allocation_rows"] = r.extra["allocation_rows"]
        row["ppl_quick"] = api.evaluate(r.loaded, profile="quick", progress=False)["perplexity"]
        print(label, f"{row['bits_per_weight']:.3f} bits, {r.seconds:.0f} s, ppl quick {row['ppl_quick']['ppl']:.2f}",
              flush=True)
        data["rows"].append(row)
        by_label[label] = row
        api.write_json(out, data)
        del r
    full = {x for x in args.full.split(",") if x}
    tasks = [x for x in args.tasks.split(",") if x]
    for task in tasks:  # the uncompressed model on the same examples, the reference for the rows
        ref = data.setdefault("fp32_tasks", {})
        if task not in ref or ref[task]["examples"] != (args.limit or ref[task]["examples"]):
            ref[task] = api.evaluate(base, ppl=False, tasks=[task], limit=args.limit, progress=False)["tasks"][task]
            print("fp32", task, ref[task], flush=True)
            api.write_json(out, data)
    for row in data["rows"]:
        if only and row["method"] not in only:
            continue
        want_full = row["method"] in full and "ppl_full" not in row
        want_tasks = [t for t in tasks if t not in row.get("tasks", {})]
        if not (want_full or want_tasks):
            continue
        if Path(row["checkpoint"], "llmpress.json").is_file():
            model = api.load(row["checkpoint"])
        else:  # compressed on another machine: every choice is seeded, so compressing again rebuilds it
            _, method, settings = next(r for r in ROWS if r[0] == row["method"])
            model = api.compress(base, method, out=work / slug(row["method"]), overwrite=True, copy_model=True,
                                 **CALIB, **settings).loaded
            row["checkpoint"] = str(work / slug(row["method"]))
            row["checkpoint_rebuilt"] = True
        if want_full:
            row["ppl_full"] = api.evaluate(model, profile="full", progress=False)["perplexity"]
            print(row["method"], "ppl full", f"{row['ppl_full']['ppl']:.2f}", flush=True)
            api.write_json(out, data)
        for task in want_tasks:
            res = api.evaluate(model, ppl=False, tasks=[task], limit=args.limit, progress=False)["tasks"][task]
            row.setdefault("tasks", {})[task] = res
            print(row["method"], task, res, flush=True)
            api.write_json(out, data)
    print(markdown(data["rows"]))


if __name__ == "__main__":
    main()
