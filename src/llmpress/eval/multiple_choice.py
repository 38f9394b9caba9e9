"""Zero-shot multiple choice by log-likelihood, as lm-evaluation-harness scores it.

Each choice is scored by the sum of its continuation's token log-probabilities after its
context: ``acc`` picks the highest sum, ``acc_norm`` the highest sum divided by the choice text's
length in characters (the harness's ``acc_norm``). Tokenization follows the harness: the
continuation's tokens are those of (context + continuation) after the tokens of the context
alone. Standard errors are the harness's: sample standard deviation / sqrt(n).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llmpress.data.examples import MultipleChoice


def _encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    spaces = len(context) - len(context.rstrip())
    if spaces:  # trailing whitespace (any, as the harness does) belongs to the continuation, as in running text
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


@torch.inference_mode()
def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16,
                   max_length: int = 2048, progress: bool = True) -> list[float]:
    """Sum of log p(continuation | context) for each (context, continuation)."""
    encoded = []
    for ctx, cont in requests:
        c, k = _encode_pair(tokenizer, ctx, cont)
        seq = (c + k)[-max_length:]
        encoded.append((seq, min(len(k), len(seq) - 1)))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))  # similar lengths batch together
    device = next(model.parameters()).device
    out = [0.0] * len(encoded)
    for b in tqdm(range(0, len(order), batch_size), desc="log-likelihood", unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        width = max(len(encoded[i][0]) for i in idx)
        x = torch.zeros(len(idx), width, dtype=torch.long, device="cpu")
        mask = torch.zeros(len(idx), width, dtype=torch.long, device="cpu")
        for row, i in enumerate(idx):
            seq = encoded[i][0]
            x[row, :len(seq)] = torch.tensor(seq, device="cpu")
            mask[row, :len(seq)] = 1
        logprobs = F.log_softmax(model(input_ids=x.to(device), attention_mask=mask.to(device),
                                       use_cache=False).logits.float(), dim=-1)
        for row, i in enumerate(idx):
            seq, n_cont = encoded[i]
            pos = torch.arange(len(seq) - n_cont, len(seq), device="cpu")
            out[i] = logprobs[row, pos - 1, x[row, pos]].sum().item()
    return out


def mean_stderr(hits: list[int]) -> float:
    """Standard error of a mean of 0/1 outcomes (sample variance, as the harness reports it)."""
    n = len(hits)
    if n < 2:
        return float("nan")
    p = sum(hits) / n
    return math.sqrt(p * (1 - p) * n / (n - 1) / n)


def evaluate_multiple_choice(model, tokenizer, examples: list[MultipleChoice], batch_size: int = 16,
                             limit: int | None = None, progress: bool = True, per_example: bool = False) -> dict:
    """``acc`` and ``acc_norm`` with their standard errors over ``examples``; ``per_example`` adds
    each example's choice log-likelihoods."""
    examples = examples[:limit] if limit else examples
    start = time.perf_counter()
    requests = [r for ex in examples for r in ex.requests]
    scores = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, progress=progress)
    acc, acc_norm, per = [], [], []
    k = 0
    for ex in examples:
        s = scores[k:k + len(ex.choices)]
        k += len(ex.choices)
        per.append(s)
        norm = [v / max(1, len(c)) for v, c in zip(s, ex.choices)]
        acc.append(int(max(range(len(s)), key=s.__getitem__) == ex.gold))
        acc_norm.append(int(max(range(len(norm)), key=norm.__getitem__) == ex.gold))
    n = len(examples)
    out = {"acc": sum(acc) / n, "acc_stderr": mean_stderr(acc), "acc_norm": sum(acc_norm) / n,
           "acc_norm_stderr": mean_stderr(acc_norm), "examples": n, "seconds": time.perf_counter() - start}
    if per_example:
        out["loglikelihoods"] = per
    return out
