"""DKM fine-tuning on DESIGN.md's revised protocol: the best recipes at 3 and 2 bits.

    python benchmarks/dkm_train.py                  # every row not yet in results/dkm_train.json
    python benchmarks/dkm_train.py --only "dkm 3-bit per-row hessian distilled from refined"
    python benchmarks/dkm_train.py --steps 60       # fine-tuning steps of every trained row (default 30)
    python benchmarks/dkm_train.py --render         # the BENCHMARKS.md table from the JSON

The recipe (found on the earlier protocol, history/dkm_train.json): start from the refined k-means
palette (Hessian-weighted k-means, error feedback, 4 passes of coordinate descent with table refit:
the baseline's best post-training row), then train with Hessian-weighted DKM, one 2**b-entry table
per output row of the 210 decoder linears and the tied embedding on one 256-entry table (eDKM's
recipe), the loss a distillation from the uncompressed model on every token of wiki train passages.

Rows:
- fp32 and the two refined palettes: copied from results/baseline.json with their source named
  (same protocol, same settings and seed; not re-measured here). Each trained row compresses its
  starting palette again (seeded, so the same tables) into its work directory;
- the two distilled DKM rows;
- fp32 fine-tuned on the same passages, every token, same steps: what the training text alone does
  to the wiki test perplexity.

Each row gets quick-profile perplexity and piqa / winogrande / arc_easy (all examples); the trained
row with the lowest quick perplexity adds the full profile. Every compression and fine-tune runs in
a fresh subprocess, so its peak resident memory is its own. The JSON is rewritten after every
measurement; a rerun resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import baseline  # benchmarks/ is this script's directory, so on sys.path
import protocol
from llmpress import api

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "dkm_train.json"

# The fine-tuning recipe every trained row shares.
TRAIN = {"data": "wiki", "loss_on": "all", "lr": 2e-4, "warmup_steps": 5, "schedule": "cosine", "batch_size": 8,
         "seq_len": 128, "eval_interval": 0, "eval_examples": 64, "save_interval": 20, "seed": 0}


def refined(bits: int) -> str:
    return f"kmeans {bits}-bit per-row hessian error-feedback refined"


def dkm(bits: int) -> dict:
    linear = {"n_bits": bits, "group_size": 1, "max_iter": 1, "tau": 1e-3}
    return {"linear": linear, "embedding": {"n_bits": 8, "group_size": 0, "max_iter": 1, "tau": 1e-3},
            "overrides": {}, "sensitivity": "hessian"}


def distilled_from_refined(bits: int) -> dict:
    """DKM started from the refined palette: its tables the centroids, its decoded weights the fp32
    weights (the teacher stays the uncompressed model)."""
    return {"method": "dkm", "compression": dkm(bits), "distill": 1.0, "start": refined(bits), "init_weights": True}


# label -> (kind, settings), in the order they run
ROWS: dict[str, tuple[str, dict]] = {
    "fp32": ("baseline", {}),
    refined(3): ("baseline", {}),
    refined(2): ("baseline", {}),
    "dkm 3-bit per-row hessian distilled from refined": ("finetune", distilled_from_refined(3)),
    "dkm 2-bit per-row hessian distilled from refined": ("finetune", distilled_from_refined(2)),
    "fp32 fine-tuned on wiki": ("finetune", {"method": "full"}),
}


def slug(label: str) -> str:
    return label.replace(" ", "_")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def stored_bits(info: dict) -> float:
    """Bits per weight of a checkpoint as stored: every tensor byte over every parameter."""
    return 8 * info["tensor_file_bytes"] / sum(g["params"] for g in info["groups"].values())


def compress_start(label: str, work: Path) -> dict:
    """The baseline row ``label`` compressed again, into ``work``; its cost."""
    method, settings = baseline.ROWS[label]
    r = api.compress("default", method, out=work / slug(label), overwrite=True, **settings)
    return {"compress_seconds": r.seconds, "peak_rss_mb": peak_rss_mb()}


def finetune(label: str, work: Path, steps: int) -> dict:
    """One fine-tune, in this (fresh) process: its cost and storage."""
    settings = {**TRAIN, "steps": steps, **ROWS[label][1]}
    start = settings.pop("start", None)
    if start is not None:
        settings["init_from"] = str(work / slug(start))
    path = work / slug(label)
    t0 = time.time()
    r = api.finetune("default", out=path, overwrite=True, progress=False, **settings)
    info = api.info(path)
    if not info["groups"]["compressed"]["params"]:  # an uncompressed fine-tune: the bits it stores (fp32)
        info["bits_per_weight"] = stored_bits(info)
    return {"steps": r.steps, "train_tokens": r.train_tokens, "train_seconds": r.seconds,
            "final_train_loss": r.losses[-1], "history": r.history, "wall_seconds": time.time() - t0,
            "peak_rss_mb": peak_rss_mb(), "checkpoint": str(path), "bits_per_weight": info["bits_per_weight"],
            "model_bits_per_weight": info["model_bits_per_weight"], "size_mb": info["tensor_file_bytes"] / 1e6,
            "storage_groups": info["groups"]}


def in_subprocess(stage: str, label: str, work: Path, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, label, "--work", str(work), "--steps", str(steps)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def from_baseline(label: str) -> dict:
    return {**baseline.measured_row(label), "kind": "baseline", "source": "benchmarks/results/baseline.json (benchmarks/baseline.py)"}


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


def cost(r: dict) -> str:
    if "train_seconds" not in r:
        return "-"
    return (f"{r['steps']} steps, {r['train_tokens']:,} tokens, {r['train_seconds'] / 60:.0f} min, "
            f"peak {r['peak_rss_mb'] / 1024:.1f} GB")


def markdown(rows: list[dict]) -> str:
    ordered = sorted(rows, key=lambda r: list(ROWS).index(r["method"]))
    return protocol.table([*baseline.HEAD, "fine-tuning cost"], [[*baseline.cells(r), cost(r)] for r in ordered])


def measure(label: str, data: dict, out: Path, work: Path, steps: int) -> None:
    """Train (if needed) and evaluate one row, writing the JSON after each step."""
    def save(row: dict, what: str) -> None:
        data["rows"] = [r for r in data["rows"] if r["method"] != label] + [row]
        data["runs"].append(protocol.run_record(what, [label]))
        api.write_json(out, data)

    row = next((r for r in data["rows"] if r["method"] == label), None)
    if row is None:
        kind, settings = ROWS[label]
        if kind == "baseline":
            return save(from_baseline(label), "copied")
        start = settings.get("start")
        if start is not None and not (work / slug(start) / "llmpress.json").is_file():
            cost = in_subprocess("compress", start, work, steps)
            print(f"{start}: compressed in {cost['compress_seconds']:.0f} s", flush=True)
        row = {"method": label, "kind": kind, "settings": {**TRAIN, "steps": steps, **settings},
               **in_subprocess("finetune", label, work, steps)}
        save(row, "finetune")
    if row["kind"] == "baseline":
        return
    if not Path(row["checkpoint"], "llmpress.json").is_file():
        raise SystemExit(f"{label}: checkpoint {row['checkpoint']} is gone; delete its row to train it again")
    if "ppl_quick" not in row:
        row["ppl_quick"] = api.evaluate(row["checkpoint"], profile="quick", progress=False)["perplexity"]
        save(row, "ppl_quick")
    missing = [t for t in protocol.TASKS if t not in row.get("tasks", {})]
    if missing:
        row.setdefault("tasks", {}).update(api.evaluate(row["checkpoint"], ppl=False, tasks=missing,
                                                        progress=False)["tasks"])
        save(row, "tasks")
    start = row["settings"].get("start")
    if start is not None and "reassigned" not in row and (work / slug(start)).is_dir():
        row["reassigned"] = reassigned(work / slug(start), Path(row["checkpoint"]))
        save(row, "reassigned")
    print(markdown([row]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default="/tmp/llmpress-dkm-train-bench", help="where the checkpoints go")
    ap.add_argument("--steps", type=int, default=30, help="fine-tuning steps of every trained row")
    ap.add_argument("--only", nargs="+", choices=list(ROWS), help="rows to run (default: all)")
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    ap.add_argument("--stage", nargs=2, metavar=("KIND", "LABEL"), help=argparse.SUPPRESS)  # one step, this process
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    if args.stage:
        kind, label = args.stage
        print(json.dumps(compress_start(label, work) if kind == "compress" else finetune(label, work, args.steps)))
        return
    data = json.loads(out.read_text()) if out.is_file() else {
        "benchmark": "dkm_train", "model": protocol.MODEL, "corpus": protocol.CORPUS, "tasks": protocol.TASK_SOURCE,
        "train": {**TRAIN, "steps": args.steps, "text": "wiki train split (documents with i % 5 != 4 and i % 20 != 3)"},
        "notes": "bits_per_weight counts every stored byte of the 210 decoder linears (indices and float16 "
                 "tables). size_mb is every tensor byte of the checkpoint: DKM rows store the embedding (tied "
                 "to the head) as an 8-bit palette, the other rows in float16. Seconds are wall time on a "
                 "2-core machine.", "runs": [], "rows": []}
    if args.render:
        print(markdown(data["rows"]))
        return
    for label in args.only or list(ROWS):
        measure(label, data, out, work, args.steps)
    trained = [r for r in data["rows"] if r["kind"] == "finetune" and "ppl_quick" in r
               and r["settings"]["method"] != "full"]
    best = min(trained, key=lambda r: r["ppl_quick"]["ppl"], default=None)
    if best is not None and "ppl_full" not in best:
        best["ppl_full"] = api.evaluate(best["checkpoint"], profile="full", progress=False)["perplexity"]
        data["runs"].append(protocol.run_record("ppl_full", [best["method"]]))
        api.write_json(out, data)
    print(markdown(data["rows"]))


if __name__ == "__main__":
    main()
