"""Does lm-evaluation-harness agree with llmpress's own multiple-choice evaluator?

    python benchmarks/harness_agreement.py --limit 400   # writes benchmarks/results/harness_agreement.json

Both score the first N examples of a BIG-bench task on the same in-memory model: the built-in
evaluator (:func:`llmpress.eval.evaluate_multiple_choice`) and the harness's HFLM on the local
harness task ``llmpress_bigbench_<task>`` (:mod:`llmpress.eval.harness`). Reported: both acc /
acc_norm, the share of examples where the two pick the same choice, and the largest difference
between their per-choice log-likelihoods. The CLI equivalent is
``llmpress eval default --tasks social_iqa --harness social_iqa --limit N``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from llmpress import api
from llmpress.data.bigbench import load_task, multiple_choice
from llmpress.eval import evaluate_multiple_choice
from llmpress.eval.harness import evaluate_harness

RESULTS = Path(__file__).parent / "results" / "harness_agreement.json"


def picks(lls: list[list[float]], choices: list[tuple[str, ...]]) -> tuple[list[int], list[int]]:
    """Per example: the acc choice (raw sum) and the acc_norm choice (sum / UTF-8 bytes)."""
    raw = [max(range(len(s)), key=s.__getitem__) for s in lls]
    norm = []
    for s, cs in zip(lls, choices):
        v = [x / len(c.encode()) for x, c in zip(s, cs)]
        norm.append(max(range(len(v)), key=v.__getitem__))
    return raw, norm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--task", default="social_iqa")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    start = time.time()
    lm = api.load(args.model)
    examples = multiple_choice(load_task(args.task))[:args.limit]
    ours = evaluate_multiple_choice(lm.model, lm.tokenizer, examples, batch_size=args.batch_size, per_example=True)
    theirs = evaluate_harness(lm.model, lm.tokenizer, [args.task], limit=args.limit, batch_size=args.batch_size,
                              samples=True)[args.task]
    choices = [ex.choices for ex in examples]
    lls_ours, lls_theirs = ours.pop("loglikelihoods"), theirs.pop("loglikelihoods")
    a_raw, a_norm = picks(lls_ours, choices)
    b_raw, b_norm = picks(lls_theirs, choices)
    n = len(examples)
    diff = max(abs(x - y) for s, t in zip(lls_ours, lls_theirs) for x, y in zip(s, t))
    theirs.pop("gold")
    data = {
        "benchmark": "harness_agreement", "model": lm.spec, "task": args.task, "examples": n,
        "command": "python " + " ".join(sys.argv), "machine": api.machine(),
        "builtin": ours, "harness": theirs,
        "same_acc_choice": sum(x == y for x, y in zip(a_raw, b_raw)) / n,
        "same_acc_norm_choice": sum(x == y for x, y in zip(a_norm, b_norm)) / n,
        "max_abs_loglikelihood_diff": diff,
        "wall_seconds": time.time() - start,
        "notes": "builtin acc_norm divides by UTF-8 bytes = harness acc_bytes; harness acc_norm divides by "
                 "characters (equal unless a choice is non-ASCII, see harness.non_ascii_examples). Each choice "
                 "carries its separating space, so both lengths include it.",
    }
    api.write_json(args.out, data)
    print({k: v for k, v in data.items() if k not in ("machine",)})


if __name__ == "__main__":
    main()
