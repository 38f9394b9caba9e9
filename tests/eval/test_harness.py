import json
import sys

import pytest

pytest.importorskip("lm_eval")

from llmpress import api  # noqa: E402
from llmpress.cli import main  # noqa: E402
from llmpress.data.bigbench import load_task, multiple_choice  # noqa: E402
from llmpress.errors import ConfigError  # noqa: E402
from llmpress.eval import evaluate_multiple_choice  # noqa: E402
from llmpress.eval.harness import evaluate_harness, harness_name, write_task  # noqa: E402
from llmpress.eval.multiple_choice import loglikelihoods  # noqa: E402


def argmax(xs):
    return max(range(len(xs)), key=xs.__getitem__)


def builtin_scores(model, tok, examples, max_length=2048):
    reqs = [(ex.context, c) for ex in examples for c in ex.choices]
    flat = loglikelihoods(model, tok, reqs, batch_size=5, max_length=max_length, progress=False)
    out, k = [], 0
    for ex in examples:
        out.append(flat[k:k + len(ex.choices)])
        k += len(ex.choices)
    return out


def assert_same_choices(model, tok, task, max_length=2048):
    examples = multiple_choice(load_task(task))
    h = evaluate_harness(model, tok, [task], batch_size=4, max_length=max_length, samples=True)[task]
    ours = builtin_scores(model, tok, examples, max_length)
    assert h["gold"] == [ex.gold for ex in examples]
    for ex, a, b in zip(examples, ours, h["loglikelihoods"]):
        assert b == pytest.approx(a, abs=1e-4)
        assert argmax(a) == argmax(b)
        nbytes = [len(c.encode()) for c in ex.choices]
        assert argmax([v / n for v, n in zip(a, nbytes)]) == argmax([v / n for v, n in zip(b, nbytes)])
    return h, examples


def test_harness_agrees_with_builtin_evaluator(tiny_model, tiny_tokenizer, fake_cache):
    h, examples = assert_same_choices(tiny_model, tiny_tokenizer, "social_iqa")
    r = evaluate_multiple_choice(tiny_model, tiny_tokenizer, examples, progress=False)
    assert (h["acc"], h["acc_bytes"], h["acc_norm"]) == (r["acc"], r["acc_norm"], r["acc_norm"])
    assert h["examples"] == 12 and h["non_ascii_examples"] == 0
    assert h["harness_task"] == "llmpress_bigbench_social_iqa"
    assert (fake_cache / "harness" / "tasks" / "llmpress_bigbench_social_iqa" / "test.jsonl").is_file()


def test_truncated_long_inputs_score_the_same_window(tiny_model, tiny_tokenizer, fake_cache):
    assert_same_choices(tiny_model, tiny_tokenizer, "social_iqa", max_length=12)


def test_non_ascii_choices_normalise_by_bytes(tiny_model, tiny_tokenizer, fake_cache):
    # load_task reads an already cached member without opening the sdist.
    task = {"name": "accents", "examples": [
        {"input": f"the cat {i}", "target_scores": {"café crème": 0, "the old mat": 1, "naïve": 0}}
        for i in range(3)]}
    path = fake_cache / "bigbench" / "accents" / "task.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(task, ensure_ascii=False), encoding="utf-8")
    h, examples = assert_same_choices(tiny_model, tiny_tokenizer, "accents")
    r = evaluate_multiple_choice(tiny_model, tiny_tokenizer, examples, progress=False)
    assert h["acc_bytes"] == r["acc_norm"] and h["non_ascii_examples"] == 3


def test_task_files(fake_cache, tmp_path):
    examples = multiple_choice(load_task("social_iqa"))
    folder = write_task("social_iqa", examples, root=tmp_path)
    assert harness_name("arithmetic/2_digit_addition") == "llmpress_bigbench_arithmetic_2_digit_addition"
    docs = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    assert [(d["context"], tuple(d["choices"]), d["gold"]) for d in docs] == \
        [(ex.context, ex.choices, ex.gold) for ex in examples]
    config = json.loads((folder / "llmpress_bigbench_social_iqa.yaml").read_text())
    assert config["target_delimiter"] == "" and config["output_type"] == "multiple_choice"


def test_missing_harness_names_the_extra(monkeypatch, tiny_model, tiny_tokenizer):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(ConfigError, match=r"llmpress\[eval\]"):
        evaluate_harness(tiny_model, tiny_tokenizer, ["social_iqa"])


def test_cli_harness_on_a_compressed_checkpoint(tiny_dir, fake_cache, tmp_path, capsys):
    out = tmp_path / "ck"
    api.compress(str(tiny_dir), method="rtn", bits=3, group_size=32, out=out, progress=False)
    js = tmp_path / "r.json"
    assert main(["eval", str(out), "--tasks", "social_iqa", "--harness", "social_iqa", "--limit", "7",
                 "--batch-size", "4", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "social_iqa acc_norm (harness)" in printed and "ppl" not in printed
    r = json.loads(js.read_text())
    ours, theirs = r["tasks"]["social_iqa"], r["harness"]["social_iqa"]
    assert theirs["examples"] == ours["examples"] == 7
    assert (theirs["acc"], theirs["acc_bytes"]) == (ours["acc"], ours["acc_norm"])


def test_compressed_embedding_and_tied_head(tiny_model, tiny_tokenizer, fake_cache):
    # A DKM-palettized embedding has no .weight, so the harness's re-tying of the head must not run.
    import torch

    from llmpress.methods.dkm import DKMConfig, DKMModelConfig
    from llmpress.models.dkm import finalize, prepare
    from llmpress.nn import CompressedEmbedding

    prepare(tiny_model, DKMModelConfig(linear=DKMConfig(n_bits=3, max_iter=1), embedding=DKMConfig(n_bits=4)))
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 8))
    tiny_model.train()
    tiny_model(input_ids=ids, labels=ids).loss.backward()  # finalize wants one training step
    finalize(tiny_model)
    tiny_model.eval()
    assert isinstance(tiny_model.model.embed_tokens, CompressedEmbedding)
    head = tiny_model.lm_head
    assert_same_choices(tiny_model, tiny_tokenizer, "social_iqa")
    assert tiny_model.lm_head is head and "tie_weights" not in tiny_model.__dict__
