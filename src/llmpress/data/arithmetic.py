"""Seeded arithmetic questions: the fine-tuning task whose delta DeltaDQ compresses.

"What is 161 plus 390?" -> "551", for 2- and 3-digit addition, subtraction and multiplication
(operands of exactly d digits). The base model answers almost none; a fine-tune answers most,
and that gap is what a compressed delta must keep. Questions are drawn without repeats, so a
question is never on both sides of the train / held-out split.
"""

from __future__ import annotations

import random

from llmpress.data.examples import Generation
from llmpress.data.splits import holdout_split
from llmpress.errors import ConfigError

OPERATIONS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
SUBTASKS = tuple(f"{d}_digit_{op}" for d in (2, 3) for op in OPERATIONS)
PER_SUBTASK = 1000


def prompt(question: str) -> str:
    return f"Q: {question}\nA:"


def subtask(name: str, n: int = PER_SUBTASK, seed: int = 0) -> list[Generation]:
    """``n`` distinct questions of one subtask (e.g. ``3_digit_times``), seeded."""
    digits, _, op = name.partition("_digit_")
    if op not in OPERATIONS or digits not in ("1", "2", "3", "4"):
        raise ConfigError(f"unknown arithmetic subtask {name!r}; e.g. {', '.join(SUBTASKS)}")
    lo, hi = 10 ** (int(digits) - 1), 10 ** int(digits) - 1
    if n > (hi - lo + 1) ** 2:
        raise ConfigError(f"{name} has only {(hi - lo + 1) ** 2} distinct questions, {n} asked")
    rng = random.Random(f"{seed}:{name}")  # a string seed: each subtask's stream is independent
    pairs: dict[tuple[int, int], None] = {}
    while len(pairs) < n:
        pairs.setdefault((rng.randint(lo, hi), rng.randint(lo, hi)))
    return [Generation(prompt(f"What is {a} {op} {b}?"), (str(OPERATIONS[op](a, b)),)) for a, b in pairs]


def examples(subtasks: tuple[str, ...] = SUBTASKS, n: int = PER_SUBTASK, seed: int = 0) -> list[Generation]:
    return [ex for name in subtasks for ex in subtask(name, n, seed)]


def train_eval_split(subtasks: tuple[str, ...] = SUBTASKS, holdout: float = 0.2, n: int = PER_SUBTASK,
                     seed: int = 0) -> tuple[list[Generation], list[Generation]]:
    """(train, held-out): by default 4,800 and 1,200 questions, disjoint."""
    data = examples(subtasks, n, seed)
    train, held = holdout_split(len(data), holdout, seed)
    return [data[i] for i in train], [data[i] for i in held]


def held_out(name: str = "arithmetic", seed: int = 0) -> list[Generation]:
    """The held-out questions of the default split, all (``arithmetic``) or of one subtask
    (``arithmetic/3_digit_times``): what a fine-tune on the train side is scored on."""
    kind, _, sub = name.partition("/")
    if kind != "arithmetic" or (sub and sub not in SUBTASKS):
        raise ConfigError(f"unknown generation set {name!r}; use 'arithmetic' or 'arithmetic/<subtask>' with a "
                          f"subtask of {', '.join(SUBTASKS)}")
    _, held = train_eval_split(seed=seed)
    if not sub:
        return held
    mine = {ex.prompt for ex in subtask(sub, seed=seed)}
    return [ex for ex in held if ex.prompt in mine]
