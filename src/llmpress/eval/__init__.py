"""Perplexity, zero-shot multiple choice, greedy-generation exact match. Results are plain dicts."""

from llmpress.eval.generation import evaluate_generation
from llmpress.eval.multiple_choice import evaluate_multiple_choice
from llmpress.eval.perplexity import PROFILES, perplexity, windows_for

__all__ = ["PROFILES", "evaluate_generation", "evaluate_multiple_choice", "perplexity", "windows_for"]
