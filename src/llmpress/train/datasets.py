"""Named training data: a seeded (train, held-out) split of prompt -> target examples."""

from __future__ import annotations

from llmpress.data.examples import Generation
from llmpress.errors import ConfigError


def _arithmetic() -> tuple[list[Generation], list[Generation]]:
    from llmpress.data.arithmetic import train_eval_split

    return train_eval_split()


def _wiki() -> tuple[list[Generation], list[Generation]]:
    from llmpress.data.wiki import passages

    # The train split trains, the validation split is held out; the test split stays unseen.
    return passages("train"), passages("validation")


DATASETS = {"arithmetic": _arithmetic, "wiki": _wiki}


def load_split(name: str) -> tuple[list[Generation], list[Generation]]:
    """(train, held-out) examples of a named data set (DESIGN.md protocols)."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ConfigError(f"unknown training data {name!r}; choose one of {sorted(DATASETS)}") from None
