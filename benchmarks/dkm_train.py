"""DKM fine-tuning against post-training baselines on the default model (issue 4).

    python benchmarks/dkm_train.py                 # writes benchmarks/results/dkm_train.json, row by row
    python benchmarks/dkm_train.py --steps 60      # fine-tuning steps of every trained row (default 30)
    python benchmarks/dkm_train.py --full          # adds full-profile perplexity to every checkpoint row
    python benchmarks/dkm_train.py --render        # prints the BENCHMARKS.md table from that JSON

Rows, at 3 and at 2 bits for the 210 decoder linears:
- fp32 and RTN g128: measured by ``benchmarks/foundation.py``; copied from foundation.json with
  their source named (same protocol, same machine, not re-measured here);
- k-means: post-training palettization, one table per output row (``--group-size 1``), no training;
- fp32 fine-tuned: the same data, steps and schedule as DKM without compression, the fair
  reference for what fine-tuning alone does to wiki perplexity;
- k-means, Hessian-weighted: the same palettes, each squared error weighted by its input
  column's calibration Hessian diagonal (quick calibration profile, 32 x 512 tokens);
- DKM: fine-tuned with every linear soft-clustered per output row (one 2**b-entry table per
  row) and the input embedding (tied to the head) on one 256-entry table, then finalized to
  palettes: eDKM's recipe (3-bit linears, 8-bit embedding); once from k-means++ centroids and
  once starting from the Hessian-weighted k-means tables (the fp32 weights are the model's);
- k-means with error feedback: the Hessian-weighted tables, the indices chosen column by column
  with GPTQ's compensation (GPTVQ's scalar case), no training;
- distilled DKM (loss on every token, the uncompressed model's distribution as the target), from
  k-means++ and from the error-feedback palette (its tables and decoded weights as the start);
- k-means with error feedback and then each table refit by least squares on the output error
  (GPTVQ's codebook update), no training;
- the same distillation on passages of the wiki train split ,
  beside the fp32 model fine-tuned on those passages (every token, same steps): its fair reference;
- k-means with error feedback, then passes of coordinate descent on the indices alternating with
  the table refit (COMQ's index updates, GPTVQ's codebook update), no training; and distilled DKM
  started from it.

Every fine-tune and every compression runs in a fresh subprocess, so its peak resident memory is
its own. The JSON is rewritten after every row; a rerun skips the rows it already has.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from llmpress import api

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "dkm_train.json"
FOUNDATION = HERE / "results" / "foundation.json"
QUICK = 32

# The fine-tuning recipe every trained row shares (the wiki train split, DESIGN.md: no instruction set is served by a package).
TRAIN = {"data": "wiki", "loss_on": "all", "lr": 2e-4, "warmup_steps": 5, "schedule": "cosine", "batch_size": 8,
         "seq_len": 128, "eval_interval": 0, "eval_examples": 64, "save_interval": 20, "seed": 0}


def dkm(bits: int, sensitivity: str = "none") -> dict:
    linear = {"n_bits": bits, "group_size": 1, "max_iter": 1, "tau": 1e-3}
    return {"linear": linear, "embedding": {"n_bits": 8, "group_size": 0, "max_iter": 1, "tau": 1e-3},
            "overrides": {}, "sensitivity": sensitivity}


# (label, kind, settings), in the order they run.
ROWS = [
    ("fp32", "foundation", {"method": "fp32"}),
    ("rtn 3-bit g128", "foundation", {"method": "rtn 3-bit g128"}),
    ("rtn 2-bit g128", "foundation", {"method": "rtn 2-bit g128"}),
    ("kmeans 3-bit per-row", "compress", {"method": "kmeans", "bits": 3, "group_size": 1}),
    ("dkm 3-bit per-row", "finetune", {"method": "dkm", "compression": dkm(3)}),
    ("fp32 fine-tuned", "finetune", {"method": "full"}),
    ("kmeans 2-bit per-row", "compress", {"method": "kmeans", "bits": 2, "group_size": 1}),
    # k-means weighted by the calibration Hessian diagonal (quick calibration profile, 32 x 512)
    ("kmeans 3-bit per-row hessian", "compress", {"method": "kmeans", "bits": 3, "group_size": 1,
                                                  "sensitivity": "hessian", "calib_samples": 32, "calib_seqlen": 512}),
    ("dkm 2-bit per-row", "finetune", {"method": "dkm", "compression": dkm(2)}),
    # DKM continued from the sensitivity-weighted palette: its tables are the starting centroids,
    # the fp32 weights those of the model ("@label": the checkpoint another row wrote).
    ("dkm 3-bit per-row hessian-kmeans start", "finetune",
     {"method": "dkm", "compression": dkm(3), "init_from": "@kmeans 3-bit per-row hessian"}),
    # DKM whose centroid updates (and k-means++ start) keep the Hessian weighting: the importance
    # of each linear's input columns from the same quick calibration (32 x 512 tokens of wiki train)
    ("dkm 3-bit per-row hessian", "finetune", {"method": "dkm", "compression": dkm(3, "hessian")}),
    ("dkm 3-bit per-row hessian from hessian-kmeans", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "init_from": "@kmeans 3-bit per-row hessian"}),
    ("dkm 2-bit per-row hessian", "finetune", {"method": "dkm", "compression": dkm(2, "hessian")}),
    # the same texts, but every token and distillation from the uncompressed model as the loss:
    # training pulls the clustered model back towards the original (its fine-tuned reference is
    # the fp32 row itself: distilling a model from itself changes nothing)
    ("dkm 3-bit per-row hessian distilled", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "loss_on": "all", "distill": 1.0}),
    # k-means tables as above, the indices chosen column by column with GPTQ's error feedback
    # (GPTVQ's scalar case): same format and bits, a better post-training starting point
    ("kmeans 3-bit per-row hessian error-feedback", "compress",
     {"method": "kmeans", "bits": 3, "group_size": 1, "sensitivity": "hessian", "error_feedback": True,
      "calib_samples": 32, "calib_seqlen": 512}),
    ("kmeans 2-bit per-row hessian error-feedback", "compress",
     {"method": "kmeans", "bits": 2, "group_size": 1, "sensitivity": "hessian", "error_feedback": True,
      "calib_samples": 32, "calib_seqlen": 512}),
    # distilled DKM started from that palette: its tables the centroids, its decoded weights the
    # fp32 weights (the teacher stays the uncompressed model)
    ("dkm 3-bit per-row hessian distilled from error-feedback", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "loss_on": "all", "distill": 1.0,
      "init_from": "@kmeans 3-bit per-row hessian error-feedback", "init_weights": True}),
    # the same, three times the steps (the cosine schedule spans the longer run)
    ("dkm 3-bit per-row hessian distilled from error-feedback 90-step", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "loss_on": "all", "distill": 1.0,
      "init_from": "@kmeans 3-bit per-row hessian error-feedback", "init_weights": True, "steps": 90}),
    ("dkm 2-bit per-row hessian distilled from error-feedback", "finetune",
     {"method": "dkm", "compression": dkm(2, "hessian"), "loss_on": "all", "distill": 1.0,
      "init_from": "@kmeans 2-bit per-row hessian error-feedback", "init_weights": True}),
    # error feedback, then each table re-solved by least squares on the layer's output error with
    # the indices fixed (GPTVQ's codebook update)
    ("kmeans 3-bit per-row hessian error-feedback refit", "compress",
     {"method": "kmeans", "bits": 3, "group_size": 1, "sensitivity": "hessian", "error_feedback": True,
      "refit": True, "calib_samples": 32, "calib_seqlen": 512}),
    # The same distillation on other text: passages of the wiki train split (the calibration
    # corpus; the test split that perplexity reads stays unseen). Its fair reference is the fp32
    # model fine-tuned on the same passages, every token, with the same steps.
    ("fp32 fine-tuned on wiki", "finetune", {"method": "full", "data": "wiki", "loss_on": "all"}),
    ("dkm 3-bit per-row hessian distilled on wiki from error-feedback", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "loss_on": "all", "distill": 1.0, "data": "wiki",
      "init_from": "@kmeans 3-bit per-row hessian error-feedback", "init_weights": True}),
    # error feedback, then four passes of coordinate descent on the indices, each followed by the
    # table refit (COMQ's index updates alternating with GPTVQ's codebook update), no training;
    # and distilled DKM started from that palette
    ("kmeans 3-bit per-row hessian error-feedback refined", "compress",
     {"method": "kmeans", "bits": 3, "group_size": 1, "sensitivity": "hessian", "error_feedback": True,
      "refine": 4, "refit": True, "calib_samples": 32, "calib_seqlen": 512}),
    ("kmeans 2-bit per-row hessian error-feedback refined", "compress",
     {"method": "kmeans", "bits": 2, "group_size": 1, "sensitivity": "hessian", "error_feedback": True,
      "refine": 4, "refit": True, "calib_samples": 32, "calib_seqlen": 512}),
    ("dkm 3-bit per-row hessian distilled from refined", "finetune",
     {"method": "dkm", "compression": dkm(3, "hessian"), "loss_on": "all", "distill": 1.0,
      "init_from": "@kmeans 3-bit per-row hessian error-feedback refined", "init_weights": True}),
    ("dkm 2-bit per-row hessian distilled from refined", "finetune",
     {"method": "dkm", "compression": dkm(2, "hessian"), "loss_on": "all", "distill": 1.0,
      "init_from": "@kmeans 2-bit per-row hessian error-feedback refined", "init_weights": True}),
]


def slug(label: str) -> str:
    return label.replace(" ", "_")


def row_dir(work: Path, ref: str) -> Path:
    """The checkpoint directory of the row an ``"@label"`` setting names."""
    return work / slug(ref.removeprefix("@"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_stage(kind: str, settings: dict, path: Path, steps: int) -> dict:
    """One compression or fine-tune, in this (fresh) process. Returns its cost and storage."""
    t0 = time.time()
    if kind == "compress":
        r = api.compress("default", out=path, overwrite=True, **settings)
        cost = {"compress_seconds": r.seconds}
    else:
        settings = {"steps": steps, **settings}
        if str(settings.get("init_from", "")).startswith("@"):
            settings["init_from"] = str(row_dir(path.parent, settings["init_from"]))
        settings = {**TRAIN, **settings}  # a row may replace the shared recipe's data
        r = api.finetune("default", out=path, overwrite=True, progress=False, **settings)
        cost = {"steps": r.steps, "train_tokens": r.train_tokens, "train_seconds": r.seconds,
                "final_train_loss": r.losses[-1], "history": r.history}
    info = api.info(path)
    if not info["groups"]["compressed"]["params"]:  # an uncompressed fine-tune: the bits it stores (fp32)
        info["bits_per_weight"] = stored_bits(info)
    return {**cost, "wall_seconds": time.time() - t0, "peak_rss_mb": peak_rss_mb(), "checkpoint": str(path),
            "bits_per_weight": info["bits_per_weight"], "model_bits_per_weight": info["model_bits_per_weight"],
            "size_mb": info["tensor_file_bytes"] / 1e6, "storage_groups": info["groups"]}


def stored_bits(info: dict) -> float:
    """Bits per weight of a checkpoint as stored: every tensor byte over every parameter."""
    return 8 * info["tensor_file_bytes"] / sum(g["params"] for g in info["groups"].values())


def from_foundation(label: str) -> dict:
    rows = {r["method"]: r for r in json.loads(FOUNDATION.read_text())["rows"]}
    if label not in rows:
        raise SystemExit(f"{FOUNDATION} has no row {label!r}; run benchmarks/foundation.py first")
    return {**rows[label], "source": "benchmarks/results/foundation.json (benchmarks/foundation.py)"}


def ppl_cell(row: dict, key: str) -> str:
    v = row.get(key)
    if isinstance(v, dict):
        v = v.get("ppl")
    return "-" if v is None else f"{v:.2f}" if v < 1e4 else f"{v:.3g}"


def markdown(rows: list[dict]) -> str:
    tasks = any("piqa" in r.get("tasks", {}) for r in rows)  # the column only once something fills it
    lines = ["| method | bits/weight (linears) | size MB | ppl quick | ppl full | "
             + ("piqa acc / acc_norm | " if tasks else "") + "fine-tuning cost |",
             "|---|---|---|---|---|---|" + ("---|" if tasks else "")]
    order = {label: i for i, (label, _, _) in enumerate(ROWS)}
    for r in sorted(rows, key=lambda r: order.get(r["method"], len(order))):
        cost = "-"
        if "train_seconds" in r:
            cost = (f"{r['steps']} steps, {r['train_tokens']:,} tokens, {r['train_seconds'] / 60:.0f} min, "
                    f"peak {r['peak_rss_mb'] / 1024:.1f} GB")
        task = r.get("tasks", {}).get("piqa")
        acc = f"{task['acc']:.3f} / {task['acc_norm']:.3f} ({task['examples']})" if task else "-"
        lines.append(f"| {r['method']} | {r['bits_per_weight']:.3f} | {r['size_mb']:.1f} | {ppl_cell(r, 'ppl_quick')} | "
                     f"{ppl_cell(r, 'ppl_full')} | " + (f"{acc} | " if tasks else "") + f"{cost} |")
    return "\n".join(lines)


def stage(label: str, work: Path, steps: int) -> dict:
    """Run one row in a fresh process (its own peak memory); returns what it measured."""
    cmd = [sys.executable, __file__, "--stage", label, "--work", str(work), "--steps", str(steps)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default="/tmp/llmpress-dkm-train-bench", help="where the checkpoints go")
    ap.add_argument("--steps", type=int, default=30, help="fine-tuning steps of every trained row")
    ap.add_argument("--full", action="store_true", help="also evaluate the full profile (104 windows)")
    ap.add_argument("--only", default="", help="comma-separated row labels to run (default: all)")
    ap.add_argument("--tasks", default="", help="zero-shot tasks for every row with a checkpoint, e.g. piqa,winogrande,arc_easy")
    ap.add_argument("--limit", type=int, help="first N examples of each task")
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one row in this process
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    if args.stage:
        label, kind, settings = next(r for r in ROWS if r[0] == args.stage)
        print(json.dumps(run_stage(kind, settings, work / slug(label), args.steps)))
        return
    if args.render:
        print(markdown(json.loads(out.read_text())["rows"]))
        return
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    for row in data["rows"]:  # rows written before uncompressed fine-tunes counted their stored bits
        if row.get("kind") == "finetune" and row["bits_per_weight"] == 0:
            row["bits_per_weight"] = stored_bits({"tensor_file_bytes": row["size_mb"] * 1e6,
                                                  "groups": row["storage_groups"]})
    data.update({"benchmark": "dkm_train", "model": "default (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)",
                 "corpus": "wiki test, seqlen 2048", "train": {**TRAIN, "steps": args.steps},
                 "command": "python " + " ".join(sys.argv), "machine": api.machine(),
                 # every invocation that added to this file, in order (rows are resumed, not redone)
                 "commands": data.get("commands", []) + ["python " + " ".join(sys.argv)],
                 "notes": "bits_per_weight counts every stored byte of the 210 decoder linears (indices and "
                          "float16 tables). size_mb is every tensor byte of the checkpoint: DKM rows store the "
                          "embedding (and the tied head) as an 8-bit palette, the other rows as float16. "
                          "Seconds are wall time on a 2-core machine, often shared with other jobs."})
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    by_label = {r["method"]: r for r in data["rows"]}
    for label, kind, settings in ROWS:
        if only and label not in only:
            continue
        row = by_label.get(label)
        if row is None:
            if kind == "foundation":
                row = from_foundation(settings["method"])
            else:
                start = str(settings.get("init_from", ""))
                if start.startswith("@") and not row_dir(work, start).is_dir():
                    # the starting palette's row is in the JSON but its checkpoint is not on this
                    # machine: the compression is seeded, so running it again gives the same tables
                    stage(start[1:], work, args.steps)
                row = {"method": label, "kind": kind, "settings": settings, **stage(label, work, args.steps)}
            data["rows"] = [r for r in data["rows"] if r["method"] != label] + [row]
            by_label[label] = row
            api.write_json(out, data)
        on_disk = "checkpoint" in row and Path(row["checkpoint"], "llmpress.json").is_file()
        for key, profile in (("ppl_quick", "quick"), ("ppl_full", "full")):
            if key in row or not on_disk or (profile == "full" and not args.full):
                continue
            row[key] = api.evaluate(row["checkpoint"], profile=profile, progress=False)["perplexity"]
            print(label, key, f"{row[key]['ppl']:.2f}", flush=True)
            api.write_json(out, data)
        for task in [t for t in args.tasks.split(",") if t and t not in row.get("tasks", {})]:
            if not (on_disk or label == "fp32"):
                continue
            res = api.evaluate(row["checkpoint"] if on_disk else "default", ppl=False, tasks=[task], limit=args.limit,
                               progress=False)["tasks"][task]
            row.setdefault("tasks", {})[task] = res
            print(label, task, res, flush=True)
            api.write_json(out, data)
        palette = row_dir(work, settings["init_from"]) if settings.get("init_weights") else None
        if palette is not None and palette.is_dir() and on_disk and "reassigned" not in row:
            row["reassigned"] = reassigned(palette, Path(row["checkpoint"]))
            print(label, "reassigned", f"{row['reassigned']:.4%}", flush=True)
            api.write_json(out, data)
    print(markdown(data["rows"]))


def reassigned(start: Path, trained: Path) -> float:
    """Fraction of the decoder linears' weights whose table entry differs between the starting
    palette and the trained one (DKM keeps each table's entry order, so index k is the same entry)."""
    from llmpress.nn import CompressedLinear

    before = dict(api.load(start).model.named_modules())
    changed = total = 0
    for name, m in api.load(trained).model.named_modules():
        if isinstance(m, CompressedLinear) and isinstance(before.get(name), CompressedLinear) \
                and m.meta()["format"] == before[name].meta()["format"] == "palette":
            a, b = before[name].packed().int_indices(), m.packed().int_indices()
            changed, total = changed + int((a != b).sum()), total + a.numel()
    return changed / total


if __name__ == "__main__":
    main()
