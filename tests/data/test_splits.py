import pytest
import torch

from llmpress.data import arithmetic, instructions, wiki
from llmpress.data.splits import holdout_split
from llmpress.errors import ConfigError


def test_wiki_splits_follow_the_protocol(fake_cache):
    docs = wiki.documents()
    assert len(docs) == 1000
    assert wiki.split_text("test") == "\n\n".join(docs[900:1000])
    assert wiki.split_text("validation") == "\n\n".join(docs[800:900])
    assert wiki.split_text("train") == "\n\n".join(docs[:800])


def test_wiki_passages_are_the_split_in_whole_sentences(fake_cache):
    for split in ("train", "validation"):
        runs = wiki.passages(split, max_chars=600)
        # every sentence of the split exactly once, in order, none cut
        sentences = [s.strip() for doc in wiki.split_text(split).split("\n\n") for s in doc.split("\n") if s.strip()]
        assert [s for g in runs for s in [*filter(None, g.prompt.split("\n")), g.targets[0]]] == sentences
        assert all(len(g.prompt) + 1 + len(g.targets[0]) <= 600 or not g.prompt for g in runs)
        assert any(g.prompt for g in runs)
    assert not any(g.prompt for g in wiki.passages("train", max_chars=10))  # a long sentence stands alone
    with pytest.raises(ConfigError, match="splits"):
        wiki.passages("dev")


def test_calibration_is_seeded(fake_cache, tiny_tokenizer):
    a = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=3)
    b = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=3)
    c = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=4)
    assert a.shape == (4, 32) and torch.equal(a, b) and not torch.equal(a, c)
    train = wiki.tokenize(wiki.split_text("train"), tiny_tokenizer)
    s = train.unfold(0, 32, 1)
    assert all((s == row).all(dim=1).any() for row in a)  # every window is a slice of the train split


def test_holdout_split_is_deterministic_disjoint_and_complete():
    tr, ho = holdout_split(1000, 0.02, seed=0)
    assert len(ho) == 20 and len(tr) == 980 and not set(tr) & set(ho) and set(tr) | set(ho) == set(range(1000))
    assert (tr, ho) == holdout_split(1000, 0.02, seed=0)
    assert ho != holdout_split(1000, 0.02, seed=1)[1]


def test_instruction_and_arithmetic_splits(fake_cache):
    train, held = instructions.train_eval_split(holdout=0.02, seed=0)
    assert len(train) + len(held) == 150 and len(held) == 3
    assert train[0].input.startswith("Do it. ")
    assert instructions.train_eval_split(holdout=0.02, seed=0) == (train, held)
    atrain, aheld = arithmetic.train_eval_split(holdout=0.1, seed=0)
    assert len(atrain) + len(aheld) == 6 * 20 and len(aheld) == 12
    assert not {e.prompt for e in atrain} & {e.prompt for e in aheld}
