"""Greedy-generation exact match: the answer is the first line of the generated text, stripped."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from llmpress.data.examples import Generation


def first_line(text: str) -> str:
    text = text.strip()
    return text.split("\n", 1)[0].strip()


@torch.inference_mode()
def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 16,
                   progress: bool = True) -> list[str]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    answers = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for b in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch", disable=not progress):
        idx = order[b:b + batch_size]
        enc = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
        width = max(map(len, enc))
        # Left padding keeps every prompt's last token at the same position for generation.
        x = torch.full((len(idx), width), pad, dtype=torch.long, device="cpu")
        mask = torch.zeros(len(idx), width, dtype=torch.long, device="cpu")
        for row, ids in enumerate(enc):
            x[row, width - len(ids):] = torch.tensor(ids, device="cpu")
            mask[row, width - len(ids):] = 1
        out = model.generate(input_ids=x.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad)
        for row, i in enumerate(idx):
            answers[i] = first_line(tokenizer.decode(out[row, width:], skip_special_tokens=True))
    return answers


def evaluate_generation(model, tokenizer, examples: list[Generation], max_new_tokens: int = 16,
                        batch_size: int = 16, limit: int | None = None, progress: bool = True) -> dict:
    examples = examples[:limit] if limit else examples
    start = time.perf_counter()
    answers = greedy_answers(model, tokenizer, [ex.prompt for ex in examples], max_new_tokens, batch_size, progress)
    hits = sum(a in {t.strip() for t in ex.targets} for a, ex in zip(answers, examples))
    return {"exact_match": hits / len(examples), "examples": len(examples), "seconds": time.perf_counter() - start}
