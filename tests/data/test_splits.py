import pytest

from llmpress.data import arithmetic, corpus_text, wiki
from llmpress.data.splits import holdout_split
from llmpress.errors import ConfigError, DataUnavailableError


def test_wiki_splits_follow_the_document_rule(fake_cache):
    docs = wiki.documents()
    assert len(docs) == 60 and docs[0].startswith("Doc 0\n\n") and "<doc" not in "".join(docs)
    assert wiki.split_text("test") == "\n\n".join(docs[i] for i in range(60) if i % 5 == 4)
    assert wiki.split_text("validation") == "\n\n".join(docs[i] for i in (3, 23, 43))
    train = wiki.split_documents("train")
    assert len(train) == 60 - 12 - 3 and docs[3] not in train and docs[4] not in train and docs[0] in train
    assert corpus_text("wiki", "test") == wiki.split_text("test")
    with pytest.raises(ConfigError, match="splits are"):
        wiki.split_text("dev")
    with pytest.raises(ConfigError, match="bigbench"):
        corpus_text("wiki-en", "test")
    with pytest.raises(ConfigError, match="unknown corpus"):
        corpus_text("wikitext3", "test")


def test_file_corpus_uses_the_same_rule(tmp_path):
    paragraphs = [f"paragraph {i} text." for i in range(12)]
    path = tmp_path / "c.txt"
    path.write_text("\n\n".join(paragraphs) + "\n")
    assert corpus_text(f"file:{path}", "test") == "paragraph 4 text.\n\nparagraph 9 text."
    assert corpus_text(f"file:{path}", "validation") == "paragraph 3 text."
    tagged = tmp_path / "d.txt"
    tagged.write_text("".join(f'<doc id="{i}">\n{p}\n\nmore\n</doc>\n' for i, p in enumerate(paragraphs)))
    assert corpus_text(f"file:{tagged}", "test").startswith("paragraph 4 text.\n\nmore\n\nparagraph 9")
    with pytest.raises(DataUnavailableError, match="does not exist"):
        corpus_text(f"file:{tmp_path / 'none.txt'}", "test")
    (tmp_path / "short.txt").write_text("one\n\ntwo\n")
    with pytest.raises(ConfigError, match="at least 5"):
        corpus_text(f"file:{tmp_path / 'short.txt'}", "test")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe" * 10)
    with pytest.raises(ConfigError, match="not UTF-8"):
        corpus_text(f"file:{tmp_path / 'bin.txt'}", "test")


def test_wiki_passages_are_the_split_in_whole_sentences(fake_cache):
    for split in ("train", "validation"):
        runs = wiki.passages(split, max_chars=120)
        assert runs and all(len(g.prompt) + len(g.targets[0]) <= 121 or not g.prompt for g in runs)
        text = " ".join(" ".join(filter(None, (g.prompt, g.targets[0]))) for g in runs)
        assert text.split() == " ".join(wiki.split_documents(split)).split()  # every word once, in order
    assert not any(g.prompt for g in wiki.passages("train", max_chars=10))  # a long sentence stands alone
    with pytest.raises(ConfigError):
        wiki.passages("dev")


def test_calibration_is_seeded(fake_cache, tiny_tokenizer):
    a = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=3)
    b = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=3)
    c = wiki.calibration_windows(tiny_tokenizer, n=4, seqlen=32, seed=4)
    assert a.shape == (4, 32) and (a == b).all() and not (a == c).all()
    train = wiki.tokenize(wiki.split_text("train"), tiny_tokenizer)
    s = train.unfold(0, 32, 1)
    assert all((s == row).all(dim=1).any() for row in a)  # every window is a slice of the train split


def test_holdout_split_is_deterministic_disjoint_and_complete():
    tr, ho = holdout_split(1000, 0.02, seed=0)
    assert len(ho) == 20 and len(tr) == 980 and not set(tr) & set(ho) and set(tr) | set(ho) == set(range(1000))
    assert (tr, ho) == holdout_split(1000, 0.02, seed=0)
    assert ho != holdout_split(1000, 0.02, seed=1)[1]


def test_arithmetic_questions_are_right_distinct_and_split_by_question():
    train, held = arithmetic.train_eval_split()
    assert len(train) == 4800 and len(held) == 1200
    prompts = [e.prompt for e in train + held]
    assert len(set(prompts)) == 6000 and not {e.prompt for e in train} & {e.prompt for e in held}
    ops = {"plus": int.__add__, "minus": int.__sub__, "times": int.__mul__}
    for ex in train[::97] + held[::31]:
        _, a, op, b = ex.prompt.removeprefix("Q: ").removesuffix("?\nA:").rsplit(" ", 3)
        assert ex.targets == (str(ops[op](int(a), int(b))),)
    assert arithmetic.train_eval_split() == (train, held)  # seeded
    assert arithmetic.train_eval_split(seed=1)[1] != held
    sub = arithmetic.held_out("arithmetic/3_digit_times")
    assert sub and all("times" in e.prompt and len(e.prompt.split()[3]) == 3 for e in sub)
    assert len(arithmetic.held_out()) == 1200
    with pytest.raises(ConfigError, match="unknown generation set"):
        arithmetic.held_out("arithmetic/5_digit_plus")
    with pytest.raises(ConfigError, match="unknown arithmetic subtask"):
        arithmetic.subtask("2_digit_divide")
    with pytest.raises(ConfigError, match="distinct questions"):
        arithmetic.subtask("1_digit_plus", n=100)
