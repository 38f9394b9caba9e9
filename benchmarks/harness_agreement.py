"""Does lm-evaluation-harness agree with llmpress's own multiple-choice evaluator?

    python benchmarks/harness_agreement.py --limit 200   # writes benchmarks/results/harness_agreement.json
    python benchmarks/harness_agreement.py --render      # its table for BENCHMARKS.md

For each task, both score its first N examples on the same in-memory model: the built-in
evaluator (:func:`llmpress.eval.evaluate_multiple_choice`, prompts written by
:mod:`llmpress.data.tasks`) and the harness's HFLM running the harness's own task definition on
the same local documents (:mod:`llmpress.eval.harness`). Reported per task: both acc / acc_norm,
the share of examples where the two pick the same choice (acc and acc_norm), and the largest
difference between their per-choice log-likelihoods. The CLI equivalent is
``llmpress eval default --tasks piqa --harness piqa --limit N``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmpress import api
from llmpress.data import tasks as zero_shot
from llmpress.eval import evaluate_multiple_choice
from llmpress.eval.harness import evaluate_harness, wrap_model

RESULTS = Path(__file__).parent / "results" / "harness_agreement.json"


def argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=xs.__getitem__)


def picks(lls: list[list[float]], choices: list[tuple[str, ...]]) -> tuple[list[int], list[int]]:
    """Per example: the acc choice (raw sum) and the acc_norm choice (sum / characters of the choice)."""
    return ([argmax(s) for s in lls],
            [argmax([x / max(1, len(c)) for x, c in zip(s, cs)]) for s, cs in zip(lls, choices)])


def markdown(data: dict) -> str:
    lines = ["| task | examples | acc built-in / harness | acc_norm built-in / harness | same acc choice | "
             "same acc_norm choice | max loglik diff |", "|---|---|---|---|---|---|---|"]
    for task, r in data["tasks"].items():
        b, h = r["builtin"], r["harness"]
        # no acc_norm where the harness's task defines none (winogrande, boolq), as `llmpress eval` prints
        has_norm = h["acc_norm"] is not None
        norm = f"{b['acc_norm']:.3f} / {h['acc_norm']:.3f}" if has_norm else "-"
        same_norm = f"{r['same_acc_norm_choice']:.3f}" if has_norm else "-"
        lines.append(f"| {task} | {r['examples']} | {b['acc']:.3f} / {h['acc']:.3f} | {norm} | "
                     f"{r['same_acc_choice']:.3f} | {same_norm} | "
                     f"{r['max_abs_loglikelihood_diff']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--tasks", nargs="+", default=list(zero_shot.TASKS))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    start = time.time()
    lm = api.load(args.model)
    hflm = wrap_model(lm.model, lm.tokenizer, batch_size=args.batch_size)
    rows = {}
    for task in args.tasks:
        examples = zero_shot.examples(task, args.limit)
        ours = evaluate_multiple_choice(lm.model, lm.tokenizer, examples, batch_size=args.batch_size, per_example=True)
        theirs = evaluate_harness(lm.model, lm.tokenizer, [task], limit=args.limit, samples=True, lm=hflm)[task]
        choices = [ex.choices for ex in examples]
        lls_ours, lls_theirs = ours.pop("loglikelihoods"), theirs.pop("loglikelihoods")
        a_raw, a_norm = picks(lls_ours, choices)
        b_raw, b_norm = picks(lls_theirs, choices)
        n = len(examples)
        for k in ("gold", "correct"):
            theirs.pop(k)
        rows[task] = {
            "examples": n, "builtin": ours, "harness": theirs,
            "same_acc_choice": sum(x == y for x, y in zip(a_raw, b_raw)) / n,
            "same_acc_norm_choice": sum(x == y for x, y in zip(a_norm, b_norm)) / n,
            "max_abs_loglikelihood_diff": max(abs(x - y) for s, t in zip(lls_ours, lls_theirs) for x, y in zip(s, t)),
        }
        print(task, {k: v for k, v in rows[task].items() if k.startswith(("same", "max"))}, flush=True)
    data = {"benchmark": "harness_agreement", "model": lm.spec, "limit": args.limit, "tasks": rows,
            "command": "python " + " ".join(sys.argv), "machine": api.machine(), "wall_seconds": time.time() - start,
            "notes": "The harness reports acc_norm only where its task's metric_list has it (not winogrande, "
                     "boolq); the acc_norm agreement is computed from both evaluators' log-likelihoods anyway."}
    api.write_json(args.out, data)


if __name__ == "__main__":
    main()
