"""Shared fixtures: a tiny random LLaMA with its own tokenizer, and a fake BIG-bench sdist.

Both are built here, offline, in seconds; tests of the real default model are marked
``smoke`` / ``slow`` and use the real cache instead.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

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


def _task(name: str, examples: list[dict], **extra) -> bytes:
    return json.dumps({"name": name, "description": "synthetic", "examples": examples, **extra}).encode()


def make_bigbench_sdist(path: Path) -> Path:
    """A tar.gz with the layout of bigbench-1.0.0 and the tasks llmpress reads, filled with synthetic text."""
    prefix = "bigbench-1.0.0/bigbench/benchmark_tasks/"
    docs = [{"input": "\n".join(make_text(40, 1000 + i + 7 * k) for k in range(3)), "target": "0 0 1"}
            for i in range(2000)]
    mc = [{"input": f"Question {i}: {make_text(6, i)}?",
           "target_scores": {make_text(2, 3 * i): 0, make_text(3, 3 * i + 1): 1, make_text(2, 3 * i + 2): 0}}
          for i in range(12)]
    files = {
        "paragraph_segmentation/task.json": _task("paragraph_segmentation", docs),
        "social_iqa/task.json": _task("social_iqa", mc, append_choices_to_input=True),
        "hyperbaton/task.json": _task("hyperbaton", mc[:6], append_choices_to_input=False),
        "README.md": b"not a task",
    }
    for d in (2, 3):
        for op, sym in (("addition", lambda a, b: a + b), ("subtraction", lambda a, b: a - b),
                        ("multiplication", lambda a, b: a * b)):
            lo = 10 ** (d - 1)
            ex = [{"input": f"What is {a} {op} {b}?", "target": str(sym(a, b))}
                  for a in range(lo, lo + 5) for b in range(2 * lo, 2 * lo + 4)]
            ex.append(dict(ex[0]))  # BIG-bench repeats some questions
            files[f"arithmetic/{d}_digit_{op}/task.json"] = _task(f"{d}_digit_{op}", ex)
    for k in range(3):
        ex = [{"input": make_text(8, 50 * k + i), "target": make_text(3, 500 + 50 * k + i)} for i in range(50)]
        files[f"natural_instructions/subtask00{k}_synthetic/task.json"] = _task(f"subtask00{k}", ex,
                                                                                 task_prefix="Do it. ")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_cache(tmp_path, monkeypatch) -> Path:
    """An empty LLMPRESS_CACHE holding only a synthetic bigbench sdist (no network needed)."""
    cache = tmp_path / "cache"
    make_bigbench_sdist(cache / "downloads" / "bigbench-1.0.0.tar.gz")
    monkeypatch.setenv("LLMPRESS_CACHE", str(cache))
    return cache
