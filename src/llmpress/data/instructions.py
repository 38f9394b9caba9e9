"""Instruction data (Alpaca-like input -> target pairs) from BIG-bench ``natural_instructions``."""

from __future__ import annotations

import json
from dataclasses import dataclass

from llmpress.data.bigbench import read_members, task_names
from llmpress.data.splits import holdout_split

TASK = "natural_instructions"


@dataclass(frozen=True)
class Pair:
    input: str
    target: str


def subtasks() -> list[str]:
    return [t for t in task_names() if t.startswith(TASK + "/")]


def pairs(names: list[str] | None = None) -> list[Pair]:
    """All (input, target) pairs of the given subtasks (default: every subtask), in file order."""
    names = names or subtasks()
    rels = [f"{n if n.startswith(TASK + '/') else TASK + '/' + n}/task.json" for n in names]
    out = []
    for rel, raw in read_members(rels).items():
        task = json.loads(raw)
        prefix = task.get("task_prefix", "")
        for ex in task["examples"]:
            target = ex.get("target")
            if isinstance(target, list):
                target = target[0] if target else None
            if target:
                out.append(Pair(prefix + ex["input"], target))
    return out


def train_eval_split(names: list[str] | None = None, holdout: float = 0.02,
                     seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Seeded split: ``holdout`` of the pairs for evaluation, the rest for training."""
    data = pairs(names)
    train, held = holdout_split(len(data), holdout, seed)
    return [data[i] for i in train], [data[i] for i in held]
