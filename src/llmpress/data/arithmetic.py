"""BIG-bench ``arithmetic``: the fine-tuning task whose delta DeltaDQ compresses.

Default subtasks: 2- and 3-digit addition, subtraction and multiplication (1000 examples each).
"""

from __future__ import annotations

from llmpress.data.bigbench import Generation, generation, load_task
from llmpress.data.splits import holdout_split

SUBTASKS = tuple(f"{d}_digit_{op}" for d in (2, 3) for op in ("addition", "subtraction", "multiplication"))


def examples(subtasks: tuple[str, ...] = SUBTASKS) -> list[Generation]:
    """Examples of the subtasks in file order, each question once: BIG-bench draws its operands at
    random, so a question can repeat, and a repeat must not sit on both sides of a split."""
    seen, out = set(), []
    for name in subtasks:
        for ex in generation(load_task(f"arithmetic/{name}")):
            if ex.prompt not in seen:
                seen.add(ex.prompt)
                out.append(ex)
    return out


def train_eval_split(subtasks: tuple[str, ...] = SUBTASKS, holdout: float = 0.1,
                     seed: int = 0) -> tuple[list[Generation], list[Generation]]:
    data = examples(subtasks)
    train, held = holdout_split(len(data), holdout, seed)
    return [data[i] for i in train], [data[i] for i in held]
