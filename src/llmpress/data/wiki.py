"""The "wiki-en" corpus of DESIGN.md: 1000 English Wikipedia articles from BIG-bench.

``paragraph_segmentation`` examples[1000:2000] are English articles, sentences joined by "\\n".
Documents 0..799 are train/calibration, 800..899 validation, 900..999 test; a split's text is
its documents joined by "\\n\\n".
"""

from __future__ import annotations

import torch

from llmpress.data.bigbench import load_task
from llmpress.errors import ConfigError

TASK = "paragraph_segmentation"
FIRST, LAST = 1000, 2000
SPLITS = {"train": (0, 800), "validation": (800, 900), "test": (900, 1000)}


def documents(task: dict | None = None) -> list[str]:
    task = task or load_task(TASK)
    return [ex["input"] for ex in task["examples"][FIRST:LAST]]


def split_text(split: str, task: dict | None = None) -> str:
    if split not in SPLITS:
        raise ConfigError(f"wiki-en has splits {sorted(SPLITS)}, not {split!r}")
    lo, hi = SPLITS[split]
    return "\n\n".join(documents(task)[lo:hi])


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """1-D LongTensor of token ids, no special tokens added."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def calibration_windows(tokenizer, n: int = 128, seqlen: int = 2048, seed: int = 0,
                        text: str | None = None) -> torch.Tensor:
    """[n, seqlen] token windows at seeded random offsets of the train split."""
    ids = tokenize(text if text is not None else split_text("train"), tokenizer)
    if ids.numel() <= seqlen:
        raise ConfigError(f"calibration text has {ids.numel()} tokens, fewer than seqlen={seqlen}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (n,), generator=g)
    return torch.stack([ids[s:s + seqlen] for s in starts.tolist()])
