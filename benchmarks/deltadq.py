"""DeltaDQ and baselines on a real fine-tune of the default model (issue 6).

    python benchmarks/deltadq.py            # writes benchmarks/results/deltadq.json (resumes it)
    python benchmarks/deltadq.py --render   # prints the BENCHMARKS.md tables from that JSON

The pair: base = the default model, fine-tune = `llmpress finetune --method full --data
arithmetic` cached under $LLMPRESS_CACHE/finetunes (see FINETUNE below). Every row is the base
plus a delta compressed by one method at one nominal ratio, evaluated on the arithmetic held-out
split (greedy exact match, all examples) and, where time allowed, quick-profile wiki
perplexity. Ratios are exact: every stored tensor byte, and every byte of the saved delta
directory (manifest included), against the same delta in float16.

Measurements are written to the JSON after each one, and a rerun skips what is there, so an
interrupted run continues.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

from llmpress import api, deltastore
from llmpress.cache import cache_dir
from llmpress.data.arithmetic import train_eval_split
from llmpress.eval.generation import greedy_answers
from llmpress.methods.deltadq import config_for
from llmpress.models import delta as dm
from llmpress.train import TrainConfig
from llmpress.train.examples import encode
from llmpress.train.loop import held_out_loss

import revisions  # benchmarks/revisions.py (a script directory: its own modules import by name)

RESULTS = Path(__file__).parent / "results" / "deltadq.json"
FINETUNE = "finetunes/smollm2-arithmetic-full"
RATIOS = (8, 16, 32, 64, 128, 256)
DELTADQ = {"bits": (1, 2, 4), "group_sizes": (16, 64, 256), "parts_bits": 1, "seed": 0}
CALIBRATION = {"data": "arithmetic", "n": 16, "seqlen": 256}
MAX_NEW_TOKENS = 8
SEED_RATIO, SEED_REPEATS = 128, (1, 2)
FINETUNE_SEQ_LEN = 32  # the fine-tune's --seq-len: answer losses are scored on the examples as it saw them
# Revisions of the uniform grid that k-bit delta values are coded on (DeltaDQ, magnitude rows):
# 1: clip from fixed fractions of max|v|, at least 0.2 max|v|: far too wide for 1-2 bit codes of
#    heavy-tailed deltas (session 15). 2: clip searched relative to the RMS, then refined.
QUANTIZER_REVISION = 2
GRID_METHODS = ("deltadq", "magnitude")


def rows_plan(ratios) -> list[tuple[str, str, dict]]:
    plan = [("base", "none", {}), ("fine-tune", "none", {})]
    # least-squares value grids (the library's default until the unbiased rows below were measured)
    plan += [(f"deltadq {r}x", "deltadq", {"ratio": r, **DELTADQ, "unbiased": False}) for r in ratios]
    plan += [(f"dare {r}x", "dare", {"ratio": r, "bits": 16, "seed": 0}) for r in ratios]
    plan += [("bitdelta", "bitdelta", {}), ("bitdelta distilled", "bitdelta", {"distill_steps": 50})]
    plan += [(f"magnitude {r}x", "magnitude", {"ratio": r, "bits": 4}) for r in (16, 64)]
    # the same DeltaDQ codes decoded on grids that do not shrink the delta (separate_codes.unbiased_grid)
    plan += [(f"deltadq unbiased {r}x", "deltadq", {"ratio": r, **DELTADQ, "unbiased": True}) for r in ratios]
    # one ratio's dropout masks drawn again: how much of a gap between two rows is the draw
    for seed in SEED_REPEATS:
        plan += [(f"deltadq unbiased {SEED_RATIO}x (seed {seed})", "deltadq",
                  {"ratio": SEED_RATIO, **DELTADQ, "unbiased": True, "seed": seed}),
                 (f"dare {SEED_RATIO}x (seed {seed})", "dare", {"ratio": SEED_RATIO, "bits": 16, "seed": seed})]
    return plan


def load_results(path: Path, ratios) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"benchmark": "deltadq", "rows": {}, "balance": None}


def current(row: dict) -> bool:
    return row["method"] not in GRID_METHODS or row.get("revision") == QUANTIZER_REVISION


def save(path: Path, data: dict) -> None:
    api.write_json(path, data)


def exact_match(model, tokenizer, held) -> dict:
    """Greedy exact match (the protocol), plus "first_number": the share of answers whose first
    integer is the target, which separates knowing the sum from answering in the bare format;
    "correct": one 0/1 per example, for paired comparisons between rows."""
    start = time.time()
    answers = greedy_answers(model, tokenizer, [ex.prompt for ex in held], MAX_NEW_TOKENS, 32, progress=False)
    correct = [int(a in {t.strip() for t in ex.targets}) for a, ex in zip(answers, held)]
    numbers = [re.search(r"-?\d+", a.replace(",", "")) for a in answers]
    first = sum(m is not None and m.group() in {t.strip() for t in ex.targets} for m, ex in zip(numbers, held))
    return {"exact_match": sum(correct) / len(held), "first_number": first / len(held), "examples": len(held),
            "seconds": time.time() - start, "answers_sample": answers[:5], "correct": correct}


def answer_loss(model, tokenizer, held) -> dict:
    """Mean NLL of the reference answer's tokens (teacher forced, EOS included) over ``held``: a
    continuous measure of how much of the fine-tune a delta keeps, far less noisy than exact match."""
    start = time.time()
    items = [encode(tokenizer, ex, FINETUNE_SEQ_LEN) for ex in held]
    loss = held_out_loss(model, items, tokenizer.pad_token_id or 0, TrainConfig(batch_size=32))
    return {"nll": loss, "examples": len(held), "seconds": time.time() - start}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test) of ``wins`` vs ``losses`` discordant pairs."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    ap.add_argument("--ppl", default="base,fine-tune,deltadq", help="row prefixes that also get quick perplexity")
    ap.add_argument("--skip-ppl", action="store_true", help="exact match only (first pass)")
    ap.add_argument("--examples", type=int, default=600,
                    help="held-out examples scored per row, evenly spaced over the 600 (the split is in subtask order)")
    ap.add_argument("--methods", default="deltadq,dare,bitdelta", help="compressed rows to run (also: magnitude)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(markdown(json.loads(out.read_text())))
        return
    ratios = tuple(int(r) for r in args.ratios.split(","))
    data = load_results(out, ratios)
    ft_manifest = json.loads((cache_dir() / FINETUNE / "llmpress.json").read_text())
    ft_hash = ft_manifest["files"]["model.safetensors"]["sha256"]
    if data["rows"] and (data.get("held_out_examples") != args.examples or data.get("finetune_sha256") != ft_hash):
        # another fine-tune (e.g. retrained on a new machine) or another evaluation set: measure afresh
        print("results were measured on another fine-tune or example count; starting a new results file")
        data = {"benchmark": "deltadq", "rows": {}, "balance": None}
    revisions.retire(data, current)  # rows of an older grid are measured again
    data["finetune_sha256"] = ft_hash
    data.update(command="python " + " ".join(sys.argv), machine=api.machine(),
                finetune=str(cache_dir() / FINETUNE), deltadq_settings=DELTADQ, calibration=CALIBRATION,
                max_new_tokens=MAX_NEW_TOKENS)
    started = time.time()
    base = api.load("default")
    ft = api.load(cache_dir() / FINETUNE)
    data["finetune_manifest"] = {k: v for k, v in ft_manifest.items() if k in ("config", "extra", "source")}
    _, held = train_eval_split()
    held = held[::max(1, len(held) // args.examples)][:args.examples]
    data["held_out_examples"] = args.examples
    ids = dm.calibration_ids(ft.tokenizer, CALIBRATION["data"], CALIBRATION["n"], CALIBRATION["seqlen"])

    if data.get("balance") is None:
        t = time.time()
        stats = dm.balance_stats(base.model, ft.model, ids, tokens=16)
        data["balance"] = {"layers": stats, "seconds": time.time() - t}
        save(out, data)

    ppl_rows = tuple(p for p in args.ppl.split(",") if p)
    methods = ("none", *args.methods.split(","))
    for label, method, settings in rows_plan(ratios):
        if method not in methods:
            continue
        row = data["rows"].setdefault(label, {"method": method, "settings": settings})
        if method in GRID_METHODS:
            row["revision"] = QUANTIZER_REVISION
        want_ppl = not args.skip_ppl and label.startswith(ppl_rows)
        if "exact_match" in row and "answer_loss" in row and (not want_ppl or "ppl_quick" in row):
            continue
        if method == "none":
            lm = base if label == "base" else ft
        else:
            # Deltas are kept in the cache, so a second pass (perplexity) reloads instead of recompressing.
            where = cache_dir("bench-deltadq") / f"r{QUANTIZER_REVISION}" / label.replace(" ", "-")
            wanted = json.loads(json.dumps(config_for(method, settings).to_dict()))
            if not (where / deltastore.MANIFEST).is_file() or deltastore.read_manifest(where)["config"] != wanted:
                t = time.time()
                delta = dm.compress(base.model, ft.model, method, config_for(method, settings), ids)
                row["compress_seconds"] = time.time() - t
                row["layers"] = [{k: v for k, v in r.items() if k != "shape"} for r in delta.layers]
                deltastore.save(delta, where, overwrite=True)
            delta = deltastore.load(where)
            row["accounting"] = delta.accounting(deltastore.directory_bytes(where))
            model = dm.apply(copy.deepcopy(base.model), delta)
            lm = api.LoadedModel(model, base.tokenizer, label)
        if "exact_match" not in row:
            row["exact_match"] = exact_match(lm.model, lm.tokenizer, held)
            print(label, {k: v for k, v in row["exact_match"].items() if k != "correct"}, flush=True)
            save(out, data)
        if "answer_loss" not in row:
            row["answer_loss"] = answer_loss(lm.model, lm.tokenizer, held)
            save(out, data)
        if want_ppl and "ppl_quick" not in row:
            row["ppl_quick"] = api.evaluate(lm, profile="quick", progress=False)["perplexity"]
            print(label, row["ppl_quick"]["ppl"], flush=True)
            save(out, data)
        if label == "deltadq 32x" and "served_exact_match" not in row:
            # The same delta served over the shared base (DeltaLinear, sparse), not merged.
            served = dm.attach(base.model, delta)
            row["served_exact_match"] = exact_match(served, base.tokenizer, held)
            save(out, data)
        del lm
    data["wall_seconds"] = data.get("wall_seconds", 0) + time.time() - started
    save(out, data)
    print(markdown(data))


def ordered(rows: dict) -> list[tuple[str, dict]]:
    """Rows in the order of the plan (the JSON stores them sorted by name)."""
    plan = [label for label, _, _ in rows_plan(RATIOS)]
    return sorted(rows.items(), key=lambda kv: plan.index(kv[0]) if kv[0] in plan else len(plan))


def _gain(em: float, base: float, ft: float) -> str:
    return f"{100 * (em - base) / (ft - base):.0f}%" if ft != base else "-"


def markdown(data: dict) -> str:
    rows = data["rows"]
    base_em = rows["base"]["exact_match"]["exact_match"]
    ft_em = rows["fine-tune"]["exact_match"]["exact_match"]
    lines = ["| model | nominal ratio | exact ratio (tensors) | exact ratio (directory) | delta bits/weight | "
             "exact match | gain kept | answer NLL | ppl quick |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in ordered(rows):
        if "exact_match" not in r:
            continue
        a = r.get("accounting")
        em = r["exact_match"]["exact_match"]
        ppl = r.get("ppl_quick")
        nominal = r["settings"].get("ratio", "~16 (sign)" if r["method"] == "bitdelta" else "-")
        cells = [label, f"{nominal}" if isinstance(nominal, str) else f"{nominal:g}x",
                 f"{a['tensor_ratio']:.1f}x" if a else "-", f"{a['directory_ratio']:.1f}x" if a else "-",
                 f"{8 * a['tensor_bytes'] / (a['linear_params'] + a['dense_params']):.3f}" if a else "-",
                 f"{em:.3f}", _gain(em, base_em, ft_em) if a else "-",
                 f"{r['answer_loss']['nll']:.4f}" if "answer_loss" in r else "-", f"{ppl['ppl']:.2f}" if ppl else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    parts = ["\n".join(lines), paired_table(rows), seeds_table(rows), revision_table(data), choices_table(rows),
             balance_table(data.get("balance"))]
    return "\n\n".join(p for p in parts if p)


def paired_table(rows: dict) -> str:
    """DeltaDQ against DARE at each ratio on the same questions: the questions only one of the two
    answers correctly, and the exact two-sided sign test (McNemar) on them."""
    lines = ["| DeltaDQ row | exact match | DARE exact match | only DeltaDQ right | only DARE right | p (sign test) | "
             "answer NLL | DARE answer NLL |", "|---|---|---|---|---|---|---|---|"]
    for label, r in [(f"{v} {r}x", r) for v in ("deltadq", "deltadq unbiased") for r in RATIOS]:
        a, b = rows.get(label), rows.get(f"dare {r}x")
        if not (a and b and "correct" in a.get("exact_match", {}) and "correct" in b.get("exact_match", {})):
            continue
        ca, cb = a["exact_match"]["correct"], b["exact_match"]["correct"]
        wins = sum(x > y for x, y in zip(ca, cb))
        losses = sum(x < y for x, y in zip(ca, cb))
        nll = lambda row: f"{row['answer_loss']['nll']:.4f}" if "answer_loss" in row else "-"  # noqa: E731
        lines.append(f"| {label} | {a['exact_match']['exact_match']:.3f} | {b['exact_match']['exact_match']:.3f} | "
                     f"{wins} | {losses} | {sign_test(wins, losses):.3g} | {nll(a)} | {nll(b)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def seeds_table(rows: dict) -> str:
    """Rows repeated with other dropout seeds: exact match and answer NLL per seed, and their mean."""
    lines = ["| row | seeds | exact match per seed | mean exact match | answer NLL per seed | mean answer NLL |",
             "|---|---|---|---|---|---|"]
    for label in [f"deltadq unbiased {SEED_RATIO}x", f"dare {SEED_RATIO}x"]:
        runs = [rows.get(label)] + [rows.get(f"{label} (seed {s})") for s in SEED_REPEATS]
        runs = [r for r in runs if r and "exact_match" in r and "answer_loss" in r]
        if len(runs) < 2:
            continue
        em = [r["exact_match"]["exact_match"] for r in runs]
        nll = [r["answer_loss"]["nll"] for r in runs]
        lines.append(f"| {label} | {len(runs)} | {', '.join(f'{x:.3f}' for x in em)} | {sum(em) / len(em):.3f} | "
                     f"{', '.join(f'{x:.4f}' for x in nll)} | {sum(nll) / len(nll):.4f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def revision_table(data: dict) -> str:
    """Rows measured again after a grid revision: the old and the new measurement side by side."""
    lines = ["| row | revision | exact match | answer NLL | mean rel. output error | ppl quick |", "|---|---|---|---|---|---|"]
    plan = [label for label, _, _ in rows_plan(RATIOS)]
    by_plan = lambda r: plan.index(r["label"]) if r["label"] in plan else len(plan)  # noqa: E731
    for old in sorted(data.get("superseded", []), key=by_plan):
        new = data["rows"].get(old["label"])
        if not (new and "exact_match" in new):
            continue
        for r in (old, new):
            err = sum(x["rel_error"] for x in r["layers"]) / len(r["layers"]) if r.get("layers") else None
            cells = [old["label"], str(r.get("revision", 1)), f"{r['exact_match']['exact_match']:.3f}",
                     f"{r['answer_loss']['nll']:.4f}" if "answer_loss" in r else "-",
                     f"{err:.3f}" if err is not None else "-",
                     f"{r['ppl_quick']['ppl']:.2f}" if "ppl_quick" in r else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def choices_table(rows: dict) -> str:
    """Per compressed row: mean relative output error on the calibration inputs, and what the
    DeltaDQ search chose (bits k and group size g, counted over the 210 layers)."""
    from collections import Counter

    lines = ["| model | mean rel. output error | chosen k (layers) | chosen g (layers) |", "|---|---|---|---|"]
    for label, r in ordered(rows):
        layers = r.get("layers")
        if not layers:
            continue
        err = sum(x["rel_error"] for x in layers) / len(layers)
        ks = Counter(x["bits"] for x in layers if "bits" in x)
        gs = Counter(x["group"] for x in layers if "group" in x)
        fmt = lambda c: ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) or "-"  # noqa: E731
        lines.append(f"| {label} | {err:.3f} | {fmt(ks)} | {fmt(gs)} |")
    return "\n".join(lines)


def balance_table(balance: dict | None) -> str:
    """DeltaDQ's "balanced intermediate results": variance and range of the products D_ij x_j of
    one output, for the delta D and for the fine-tuned weight W, averaged per layer type."""
    if not balance:
        return ""
    by_type: dict[str, list[dict]] = {}
    for row in balance["layers"]:
        by_type.setdefault(row["name"].rsplit(".", 1)[-1], []).append(row)
    lines = ["| layer type | delta var | weight var | var ratio | delta range | weight range | range ratio |",
             "|---|---|---|---|---|---|---|"]
    for kind, rs in by_type.items():
        m = {k: sum(r[k] for r in rs) / len(rs) for k in ("delta_var", "weight_var", "delta_range", "weight_range")}
        lines.append(f"| {kind} | {m['delta_var']:.3g} | {m['weight_var']:.3g} | {m['delta_var'] / m['weight_var']:.2g} | "
                     f"{m['delta_range']:.3g} | {m['weight_range']:.3g} | {m['delta_range'] / m['weight_range']:.2g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
