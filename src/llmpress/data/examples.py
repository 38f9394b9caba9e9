"""The two kinds of evaluation example: multiple choice by log-likelihood, and greedy generation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MultipleChoice:
    """One question scored as lm-evaluation-harness scores it.

    ``requests[i]`` is the (context, continuation) pair whose log-likelihood scores choice i;
    ``choices[i]`` is that choice's text as the task defines it (its length in characters is
    what ``acc_norm`` divides by); ``gold`` indexes the right choice.
    """

    requests: tuple[tuple[str, str], ...]
    choices: tuple[str, ...]
    gold: int

    def __post_init__(self):
        if len(self.requests) != len(self.choices) or not 0 <= self.gold < len(self.choices):
            raise ValueError(f"{len(self.requests)} requests, {len(self.choices)} choices, gold {self.gold}")

    @classmethod
    def completions(cls, context: str, choices, gold: int, delimiter: str = " ") -> "MultipleChoice":
        """Each choice continues one shared context (the harness's usual case)."""
        choices = tuple(choices)
        return cls(tuple((context, delimiter + c) for c in choices), choices, gold)

    @classmethod
    def partial(cls, contexts, continuation: str, gold: int, delimiter: str = " ") -> "MultipleChoice":
        """Each choice is a context and one shared continuation is scored after it (Winogrande's
        partial evaluation, Sakaguchi et al. 2019)."""
        contexts = tuple(contexts)
        return cls(tuple((c, delimiter + continuation) for c in contexts), contexts, gold)


@dataclass(frozen=True)
class Generation:
    """A prompt and the answers accepted by exact match (compared stripped)."""

    prompt: str
    targets: tuple[str, ...]
