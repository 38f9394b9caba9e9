"""The "wiki-en" corpus of DESIGN.md: 1000 English Wikipedia articles from BIG-bench.

``paragraph_segmentation`` examples[1000:2000] are English articles, sentences joined by "\\n".
Documents 0..799 are train/calibration, 800..899 validation, 900..999 test; a split's text is
its documents joined by "\\n\\n".
"""

from __future__ import annotations

import torch

from llmpress.data.bigbench import Generation, load_task
from llmpress.errors import ConfigError

TASK = "paragraph_segmentation"
FIRST, LAST = 1000, 2000
SPLITS = {"train": (0, 800), "validation": (800, 900), "test": (900, 1000)}


def documents(task: dict | None = None) -> list[str]:
    task = task or load_task(TASK)
    return [ex["input"] for ex in task["examples"][FIRST:LAST]]


def split_documents(split: str, task: dict | None = None) -> list[str]:
    if split not in SPLITS:
        raise ConfigError(f"wiki-en has splits {sorted(SPLITS)}, not {split!r}")
    lo, hi = SPLITS[split]
    return documents(task)[lo:hi]


def split_text(split: str, task: dict | None = None) -> str:
    return "\n\n".join(split_documents(split, task))


def passages(split: str, max_chars: int = 600, task: dict | None = None) -> list[Generation]:
    """A split as language-modelling examples: each document cut into runs of whole sentences of at
    most ``max_chars`` characters (about 150 tokens; a longer sentence stands alone), the last
    sentence of a run its target and the others its prompt, one sentence a line as in the corpus
    (a one-sentence run has an empty prompt).
    Train on every token (``loss_on="all"``) for plain language modelling or distillation."""
    runs: list[list[str]] = []
    for doc in split_documents(split, task):
        run: list[str] = []
        for sentence in filter(None, (s.strip() for s in doc.split("\n"))):
            if run and sum(len(s) + 1 for s in run) + len(sentence) > max_chars:
                runs.append(run)
                run = []
            run.append(sentence)
        runs += [run] if run else []
    return [Generation("\n".join(run[:-1]), (run[-1],)) for run in runs]


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
