"""Prompt -> target examples turned into token batches whose loss covers only the target.

A training example is the prompt's tokens followed by the target's tokens and EOS; labels are
-100 (ignored) on the prompt, so the model learns to answer, not to repeat questions. Batches
are right-padded; padding is masked out of attention and loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.data.examples import Generation
from llmpress.errors import ConfigError

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    labels: list[int]


def encode(tokenizer, example: Generation, seq_len: int) -> Encoded:
    """Prompt, then " " + the first target and EOS. Truncated from the left of the prompt when
    longer than ``seq_len`` (the answer is what must survive); a target that alone does not fit
    keeps its first ``seq_len - 1`` tokens (and loses its EOS) after one prompt token."""
    if seq_len < 2:
        raise ConfigError(f"seq_len must be >= 2 to hold a prompt token and an answer, got {seq_len}")
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    target = tokenizer(" " + example.targets[0].strip(), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    target = target[:seq_len - 1]
    prompt = prompt[max(0, len(prompt) + len(target) - seq_len):]
    return Encoded(prompt + target, [IGNORE] * len(prompt) + target)


class LazyEncoded:
    """``encode`` of each example on first use: a run reads only ``steps x batch`` examples of a
    split that can hold many more (the wiki train split has ~10k passages)."""

    def __init__(self, tokenizer, examples: list[Generation], seq_len: int):
        self.tokenizer, self.examples, self.seq_len = tokenizer, examples, seq_len
        self._done: dict[int, Encoded] = {}

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Encoded:
        if i not in self._done:
            self._done[i] = encode(self.tokenizer, self.examples[i], self.seq_len)
        return self._done[i]


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """{input_ids, attention_mask, labels}: [batch, longest] tensors, right-padded (on the host: the
    loop moves each batch to the model's device)."""
    width = max(len(e.ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long, device="cpu")
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long, device="cpu")
    mask = torch.zeros(len(items), width, dtype=torch.long, device="cpu")
    for row, e in enumerate(items):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids, device="cpu")
        labels[row, :n] = torch.tensor(e.labels, device="cpu")
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_indices(n: int, step: int, micro: int, config) -> list[int]:
    """Example indices of micro-batch ``micro`` of optimizer step ``step``.

    Order is a seeded permutation per epoch, so the batches of any step follow from (seed, step)
    alone: a resumed run sees exactly the data the uninterrupted run would have seen.
    """
    per_step = config.examples_per_step
    start = step * per_step + micro * config.batch_size
    out = []
    for pos in range(start, start + config.batch_size):
        epoch, offset = divmod(pos, n)
        perm = _permutation(n, config.seed, epoch)
        out.append(perm[offset])
    return out


_PERMS: dict[tuple[int, int, int], list[int]] = {}


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERMS:
        if len(_PERMS) > 4:
            _PERMS.clear()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        _PERMS[key] = torch.randperm(n, generator=g).tolist()
    return _PERMS[key]
