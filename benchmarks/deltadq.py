"""DeltaDQ, DARE and BitDelta on DESIGN.md's revised protocol (issue 19, re-baseline (e)).

    python benchmarks/deltadq.py                 # everything not yet in results/deltadq.json
    python benchmarks/deltadq.py --stages generation ppl_quick   # the cheap measurements only
    python benchmarks/deltadq.py --render        # the BENCHMARKS.md tables from the JSON

The pair: base = the default model; fine-tune = plain full fine-tuning of it on the train side of
the seeded arithmetic task (FINETUNE_RECIPE, the README's command), built by this script into
$LLMPRESS_CACHE/finetunes on its first run. Every compressed row is the base plus the fine-tune's
delta compressed by one method at one nominal ratio (DeltaDQ: Jiang et al. 2024, group-wise
dropout + separate quantization; DARE: Yu et al. 2024, random drop and rescale; BitDelta: Liu et
al. 2024, sign bits and one scale per matrix), merged into a copy of the base.

Measurements, in stages over all rows so the cheap ones land first: greedy exact match on all
1,200 held-out questions and the mean NLL of their reference answers ("generation"); quick-profile
wiki perplexity; piqa / winogrande / arc_easy; full-profile perplexity of the fine-tune and of the
best row (highest exact match) of each method. The base's perplexities and tasks are the fp32
row of results/baseline.json (the same model, same protocol), copied with its source named.
Ratios are exact: every stored tensor byte and every byte of the saved delta directory against
the same delta in float16. The JSON is rewritten after every measurement; a rerun resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import baseline  # benchmarks/ is this script's directory, so on sys.path
import protocol
from llmpress import api, deltastore
from llmpress.cache import cache_dir
from llmpress.data.arithmetic import SUBTASKS, train_eval_split
from llmpress.eval.generation import greedy_answers
from llmpress.methods.deltadq import config_for
from llmpress.models import delta as dm
from llmpress.train import TrainConfig
from llmpress.train.examples import encode
from llmpress.train.loop import held_out_loss

RESULTS = Path(__file__).parent / "results" / "deltadq.json"
FINETUNE = "finetunes/smollm2-arithmetic-generated"
FINETUNE_RECIPE = {"method": "full", "data": "arithmetic", "steps": 300, "lr": 1e-4, "batch_size": 16,
                   "seq_len": 32, "train_embeddings": False, "seed": 0}
RATIOS = (16, 128, 256)
DELTADQ = {"bits": (1, 2, 4), "group_sizes": (16, 64, 256), "parts_bits": 1, "seed": 0}
CALIBRATION = {"data": "arithmetic", "n": 16, "seqlen": 256}
MAX_NEW_TOKENS = 8
SERVED = "deltadq 16x"  # also scored served over the shared base (DeltaLinear, sparse), not merged
STAGES = ("generation", "ppl_quick", "tasks", "ppl_full")

# label -> (method, settings), in table order
ROWS: dict[str, tuple[str, dict]] = {
    "base": ("none", {}),
    "fine-tune": ("none", {}),
    **{f"deltadq {r}x": ("deltadq", {"ratio": r, **DELTADQ}) for r in RATIOS},
    **{f"dare {r}x": ("dare", {"ratio": r, "bits": 16, "seed": 0}) for r in RATIOS},
    "bitdelta": ("bitdelta", {}),
}


def finetune_path() -> Path:
    """The cached fine-tune, trained first if missing (about 15 minutes on 2 cores)."""
    path = cache_dir() / FINETUNE
    if not (path / "llmpress.json").is_file():
        print(f"training the fine-tune into {path}", flush=True)
        settings = {k: v for k, v in FINETUNE_RECIPE.items() if k not in ("method", "data")}
        api.finetune("default", method="full", data="arithmetic", out=path, overwrite=True, progress=False,
                     **settings)
    return path


def exact_match(model, tokenizer, held) -> dict:
    """Greedy exact match (the protocol) with its standard error, plus "first_number": the share of
    answers whose first integer is the target (knowing the result vs answering in the bare format);
    "correct": one 0/1 per question, for paired comparisons between rows."""
    start = time.time()
    answers = greedy_answers(model, tokenizer, [ex.prompt for ex in held], MAX_NEW_TOKENS, 32, progress=False)
    targets = [{t.strip() for t in ex.targets} for ex in held]
    correct = [int(a in t) for a, t in zip(answers, targets)]
    numbers = [re.search(r"-?\d+", a.replace(",", "")) for a in answers]
    first = sum(m is not None and m.group() in t for m, t in zip(numbers, targets))
    p = sum(correct) / len(held)
    return {"exact_match": p, "stderr": math.sqrt(p * (1 - p) / (len(held) - 1)), "first_number": first / len(held),
            "examples": len(held), "seconds": time.time() - start, "answers_sample": answers[:5], "correct": correct}


def answer_loss(model, tokenizer, held) -> dict:
    """Mean NLL of the reference answers' tokens (teacher forced, EOS included), the examples cut
    as the fine-tune saw them: a continuous measure of how much of the fine-tune a delta keeps."""
    start = time.time()
    items = [encode(tokenizer, ex, FINETUNE_RECIPE["seq_len"]) for ex in held]
    loss = held_out_loss(model, items, tokenizer.pad_token_id or 0, TrainConfig(batch_size=32))
    return {"nll": loss, "examples": len(held), "seconds": time.time() - start}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test) of ``wins`` vs ``losses`` discordant pairs."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


class Models:
    """The base, the fine-tune and each row's merged model, loaded or compressed when first asked for."""

    def __init__(self, data: dict):
        self.data, self.base, self.ft, self._ids = data, api.load("default"), api.load(finetune_path()), None

    def calibration(self):
        if self._ids is None:
            self._ids = dm.calibration_ids(self.ft.tokenizer, CALIBRATION["data"], CALIBRATION["n"],
                                           CALIBRATION["seqlen"])
        return self._ids

    def delta(self, label: str, row: dict):
        """The row's delta, compressed once into the cache (a later stage or run reloads it)."""
        method, settings = ROWS[label]
        where = cache_dir("bench-deltadq") / self.data["finetune_sha256"][:12] / label.replace(" ", "-")
        wanted = json.loads(json.dumps(config_for(method, settings).to_dict()))
        if not (where / deltastore.MANIFEST).is_file() or deltastore.read_manifest(where)["config"] != wanted:
            t = time.time()
            delta = dm.compress(self.base.model, self.ft.model, method, config_for(method, settings),
                                self.calibration(), progress=False)
            row["compress_seconds"] = time.time() - t
            row["layers"] = [{k: v for k, v in r.items() if k != "shape"} for r in delta.layers]
            deltastore.save(delta, where, overwrite=True)
        delta = deltastore.load(where)
        row["accounting"] = delta.accounting(deltastore.directory_bytes(where))
        return delta

    def merged(self, label: str, row: dict) -> api.LoadedModel:
        if label == "base":
            return self.base
        if label == "fine-tune":
            return self.ft
        model = dm.apply(copy.deepcopy(self.base.model), self.delta(label, row))
        return api.LoadedModel(model, self.base.tokenizer, label)


def best_of_each_method(rows: dict) -> list[str]:
    """Per compressed method, the row with the highest exact match (ties: lower answer NLL)."""
    best: dict[str, tuple] = {}
    for label, r in rows.items():
        if r["method"] != "none" and "answer_loss" in r:
            key = (r["exact_match"]["exact_match"], -r["answer_loss"]["nll"])
            if r["method"] not in best or key > best[r["method"]][0]:
                best[r["method"]] = (key, label)
    return [label for _, label in best.values()]


def measure(stage: str, label: str, row: dict, models: Models, held) -> bool:
    """One stage of one row, if it is missing. Returns whether something was measured."""
    if stage == "generation" and "answer_loss" not in row:
        lm = models.merged(label, row)
        row["exact_match"] = exact_match(lm.model, lm.tokenizer, held)
        row["answer_loss"] = answer_loss(lm.model, lm.tokenizer, held)
        if label == SERVED:
            row["served_exact_match"] = exact_match(dm.attach(models.base.model, models.delta(label, row)),
                                                    models.base.tokenizer, held)
        return True
    if label == "base":
        return False  # perplexities and tasks: baseline.json's fp32 row, copied at the start
    if stage == "ppl_quick" and "ppl_quick" not in row:
        row["ppl_quick"] = api.evaluate(models.merged(label, row), profile="quick", progress=False)["perplexity"]
        return True
    if stage == "tasks" and any(t not in row.get("tasks", {}) for t in protocol.TASKS):
        missing = [t for t in protocol.TASKS if t not in row.get("tasks", {})]
        row.setdefault("tasks", {}).update(api.evaluate(models.merged(label, row), ppl=False, tasks=missing,
                                                        progress=False)["tasks"])
        return True
    if stage == "ppl_full" and "ppl_full" not in row and (label == "fine-tune"
                                                          or label in best_of_each_method(models.data["rows"])):
        row["ppl_full"] = api.evaluate(models.merged(label, row), profile="full", progress=False)["perplexity"]
        return True
    return False


def copy_base_scores(row: dict) -> None:
    fp32 = baseline.measured_row("fp32")
    row.update({k: fp32[k] for k in ("ppl_quick", "ppl_full")},
               tasks={t: fp32["tasks"][t] for t in protocol.TASKS},
               scores_source="benchmarks/results/baseline.json, row fp32 (benchmarks/baseline.py)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the tables of an existing JSON and exit")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to measure (default: all)")
    ap.add_argument("--examples", type=int, help="score only the first N held-out questions (a trial run; "
                    "its JSON must go elsewhere with --out)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(markdown(json.loads(out.read_text())))
        return
    manifest = json.loads((finetune_path() / "llmpress.json").read_text())
    ft_hash = manifest["files"]["model.safetensors"]["sha256"]
    data = json.loads(out.read_text()) if out.is_file() else {}
    if data.get("finetune_sha256") != ft_hash:
        if data:
            print("the results were measured on another fine-tune; starting a new results file", flush=True)
        data = {"benchmark": "deltadq", "model": protocol.MODEL, "corpus": protocol.CORPUS,
                "tasks": protocol.TASK_SOURCE, "finetune_sha256": ft_hash, "finetune_recipe": FINETUNE_RECIPE,
                "finetune": {k: v for k, v in manifest.items() if k in ("config", "extra", "source")},
                "held_out": "all 1,200 held-out questions of llmpress.data.arithmetic.train_eval_split()",
                "deltadq_settings": DELTADQ, "calibration": CALIBRATION, "max_new_tokens": MAX_NEW_TOKENS,
                "notes": "Seconds are wall time on a 2-core machine; ratios count every stored byte against the "
                         "same delta in float16.", "runs": [], "rows": {}, "balance": None}
    models = Models(data)
    _, held = train_eval_split()
    if args.examples:
        if out == RESULTS:
            raise SystemExit("--examples is for trial runs: give --out too")
        held = held[:args.examples]
    for label, (method, settings) in ROWS.items():
        row = data["rows"].setdefault(label, {"method": method, "settings": settings})
        if label == "base" and "tasks" not in row:
            copy_base_scores(row)
    if data["balance"] is None:
        t = time.time()
        stats = dm.balance_stats(models.base.model, models.ft.model, models.calibration(), tokens=16, progress=False)
        data["balance"] = {"layers": stats, "seconds": time.time() - t}
    api.write_json(out, data)
    for stage in args.stages:
        for label in args.rows or list(ROWS):
            t = time.time()
            if measure(stage, label, data["rows"][label], models, held):
                data["runs"].append({**protocol.run_record(stage, [label]), "seconds": time.time() - t})
                api.write_json(out, data)  # after every measurement: a stopped run keeps what it measured
                print(f"{label}: {stage} in {time.time() - t:.0f} s", flush=True)
    print(markdown(data))


def ordered(rows: dict) -> list[tuple[str, dict]]:
    """Rows in table order (the JSON stores them sorted by label)."""
    plan = list(ROWS)
    return sorted(rows.items(), key=lambda kv: plan.index(kv[0]) if kv[0] in plan else len(plan))


def _gain(em: float, base: float, ft: float) -> str:
    return f"{100 * (em - base) / (ft - base):.0f}%" if ft != base else "-"


def markdown(data: dict) -> str:
    rows = data["rows"]
    em = lambda r: r["exact_match"]["exact_match"]  # noqa: E731
    base_em, ft_em = em(rows["base"]), em(rows["fine-tune"])
    head = ["model", "nominal ratio", "exact ratio (tensors)", "exact ratio (directory)", "delta bits/weight",
            "exact match", "gain kept", "answer NLL", *protocol.SCORE_HEAD]
    body = []
    for label, r in ordered(rows):
        if "exact_match" not in r:
            continue
        a = r.get("accounting")
        nominal = r["settings"].get("ratio")
        cells = [label, f"{nominal:g}x" if nominal else ("~16x (sign)" if r["method"] == "bitdelta" else "-")]
        cells += [f"{a['tensor_ratio']:.1f}x", f"{a['directory_ratio']:.1f}x",
                  f"{8 * a['tensor_bytes'] / (a['linear_params'] + a['dense_params']):.3f}"] if a else ["-"] * 3
        cells += [f"{em(r):.3f} ± {r['exact_match']['stderr']:.3f}", _gain(em(r), base_em, ft_em) if a else "-",
                  f"{r['answer_loss']['nll']:.4f}", *protocol.score_cells(r)]
        body.append(cells)
    parts = [protocol.table(head, body), by_subtask_table(rows), paired_table(rows), served_line(rows),
             choices_table(rows), balance_table(data.get("balance"))]
    return "\n\n".join(p for p in parts if p)


def subtask_of(prompt: str) -> str:
    """ "Q: What is 161 plus 390?..." -> "3_digit_plus" (both operands have the same digits)."""
    a, op = re.search(r"What is (\d+) (\w+)", prompt).groups()
    return f"{len(a)}_digit_{op}"


def by_subtask_table(rows: dict) -> str:
    """Exact match per arithmetic subtask: which questions a delta gives up."""
    _, held = train_eval_split()
    names = [subtask_of(ex.prompt) for ex in held]
    subtasks = [s for s in SUBTASKS if s in names]
    body = []
    for label, r in ordered(rows):
        correct = r.get("exact_match", {}).get("correct")
        if correct is None or len(correct) != len(held):
            continue
        body.append([label] + [f"{sum(c for c, n in zip(correct, names) if n == s) / names.count(s):.3f}"
                               for s in subtasks])
    return protocol.table(["model", *subtasks], body) if body else ""


def paired_table(rows: dict) -> str:
    """DeltaDQ against DARE at each ratio on the same questions: the questions only one of the two
    answers correctly, and the exact two-sided sign test (McNemar) on them."""
    body = []
    for r in RATIOS:
        a, b = rows.get(f"deltadq {r}x", {}), rows.get(f"dare {r}x", {})
        if "correct" not in a.get("exact_match", {}) or "correct" not in b.get("exact_match", {}):
            continue
        ca, cb = a["exact_match"]["correct"], b["exact_match"]["correct"]
        wins, losses = sum(x > y for x, y in zip(ca, cb)), sum(x < y for x, y in zip(ca, cb))
        body.append([f"{r}x", f"{a['exact_match']['exact_match']:.3f}", f"{b['exact_match']['exact_match']:.3f}",
                     str(wins), str(losses), f"{sign_test(wins, losses):.3g}"])
    head = ["ratio", "DeltaDQ exact match", "DARE exact match", "only DeltaDQ right", "only DARE right", "p (sign test)"]
    return protocol.table(head, body) if body else ""


def served_line(rows: dict) -> str:
    r = rows.get(SERVED, {})
    if "served_exact_match" not in r:
        return ""
    same = sum(x == y for x, y in zip(r["served_exact_match"]["correct"], r["exact_match"]["correct"]))
    return (f"{SERVED} served over the shared base (DeltaLinear, the delta kept sparse): exact match "
            f"{r['served_exact_match']['exact_match']:.3f} against {r['exact_match']['exact_match']:.3f} merged; "
            f"{same} of {len(r['exact_match']['correct'])} questions scored the same.")


def choices_table(rows: dict) -> str:
    """Per compressed row: mean relative output error on the calibration inputs, and what the
    DeltaDQ search chose (bits k and group size g, counted over the 210 layers)."""
    body = []
    for label, r in ordered(rows):
        if layers := r.get("layers"):
            ks = Counter(x["bits"] for x in layers if "bits" in x)
            gs = Counter(x["group"] for x in layers if "group" in x)
            fmt = lambda c: ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) or "-"  # noqa: E731
            body.append([label, f"{sum(x['rel_error'] for x in layers) / len(layers):.3f}", fmt(ks), fmt(gs)])
    return protocol.table(["model", "mean rel. output error", "chosen k (layers)", "chosen g (layers)"], body)


def balance_table(balance: dict | None) -> str:
    """DeltaDQ's "balanced intermediate results": variance and range of the products D_ij x_j of
    one output, for the delta D and for the fine-tuned weight W, averaged per layer type."""
    if not balance:
        return ""
    by_type: dict[str, list[dict]] = {}
    for row in balance["layers"]:
        by_type.setdefault(row["name"].rsplit(".", 1)[-1], []).append(row)
    body = []
    for kind, rs in by_type.items():
        m = {k: sum(r[k] for r in rs) / len(rs) for k in ("delta_var", "weight_var", "delta_range", "weight_range")}
        body.append([kind, f"{m['delta_var']:.3g}", f"{m['weight_var']:.3g}", f"{m['delta_var'] / m['weight_var']:.2g}",
                     f"{m['delta_range']:.3g}", f"{m['weight_range']:.3g}",
                     f"{m['delta_range'] / m['weight_range']:.2g}"])
    head = ["layer type", "delta var", "weight var", "var ratio", "delta range", "weight range", "range ratio"]
    return protocol.table(head, body)


if __name__ == "__main__":
    main()
