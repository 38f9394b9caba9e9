import json

import pytest

pytest.importorskip("lm_eval")

from llmpress import api  # noqa: E402
from llmpress.cli import main  # noqa: E402
from llmpress.data import tasks as zero_shot  # noqa: E402
from llmpress.errors import ConfigError  # noqa: E402
from llmpress.eval import evaluate_multiple_choice  # noqa: E402
from llmpress.eval.harness import evaluate_harness, harness_name, write_task  # noqa: E402
from llmpress.eval.multiple_choice import loglikelihoods  # noqa: E402


def argmax(xs):
    return max(range(len(xs)), key=xs.__getitem__)


def builtin_scores(model, tok, examples, max_length=2048):
    flat = loglikelihoods(model, tok, [r for ex in examples for r in ex.requests], batch_size=5,
                          max_length=max_length, progress=False)
    out, k = [], 0
    for ex in examples:
        out.append(flat[k:k + len(ex.choices)])
        k += len(ex.choices)
    return out


def assert_same_choices(model, tok, task, max_length=2048):
    examples = zero_shot.examples(task)
    h = evaluate_harness(model, tok, [task], batch_size=4, max_length=max_length, samples=True)[task]
    ours = builtin_scores(model, tok, examples, max_length)
    assert all(g in (None, ex.gold) for g, ex in zip(h["gold"], examples))
    assert h["correct"] == [int(argmax(a) == ex.gold) for a, ex in zip(ours, examples)]
    for ex, a, b in zip(examples, ours, h["loglikelihoods"]):
        assert b == pytest.approx(a, abs=1e-4)
        assert argmax(a) == argmax(b)
    return h, examples


@pytest.mark.parametrize("task", ["piqa", "winogrande", "hellaswag", "arc_challenge", "boolq"])
def test_harness_agrees_with_builtin_evaluator(task, tiny_model, tiny_tokenizer, fake_cache):
    h, examples = assert_same_choices(tiny_model, tiny_tokenizer, task)
    r = evaluate_multiple_choice(tiny_model, tiny_tokenizer, examples, progress=False)
    assert h["examples"] == r["examples"] == 9
    assert h["acc"] == r["acc"] and h["acc_stderr"] == pytest.approx(r["acc_stderr"])
    if "acc_norm" in zero_shot.task(task).metrics:
        assert h["acc_norm"] == r["acc_norm"] and h["acc_norm_stderr"] == pytest.approx(r["acc_norm_stderr"])
    else:
        assert h["acc_norm"] is None  # the harness's own task reports acc only
    assert h["harness_task"] == f"llmpress_{task}"


def test_truncated_long_inputs_score_the_same_window(tiny_model, tiny_tokenizer, fake_cache):
    assert_same_choices(tiny_model, tiny_tokenizer, "boolq", max_length=12)


def test_task_files_include_the_harness_own_definition(fake_cache, tmp_path):
    yaml = tmp_path / "piqa.yaml"
    folder = write_task("piqa", root=tmp_path, yaml_path=yaml)
    assert harness_name("piqa") == "llmpress_piqa"
    docs = [json.loads(line) for line in (folder / "validation.jsonl").read_text().splitlines()]
    assert docs == zero_shot.documents("piqa")
    config = json.loads((folder / "llmpress_piqa.yaml").read_text())
    assert config["include"] == str(yaml) and config["dataset_path"] == "json"
    assert config["training_split"] is None and config["validation_split"] == "validation"
    assert "doc_to_text" not in config  # prompts come from the harness, not from llmpress
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate_harness(None, None, ["social_iqa"])


def test_cli_harness_on_a_compressed_checkpoint(tiny_dir, fake_cache, tmp_path, capsys):
    out = tmp_path / "ck"
    api.compress(str(tiny_dir), method="rtn", bits=3, group_size=32, out=out, progress=False)
    js = tmp_path / "r.json"
    assert main(["eval", str(out), "--tasks", "arc_easy", "--harness", "arc_easy", "--limit", "7",
                 "--batch-size", "4", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "arc_easy acc_norm (harness)" in printed and "ppl" not in printed and "+- " in printed
    r = json.loads(js.read_text())
    ours, theirs = r["tasks"]["arc_easy"], r["harness"]["arc_easy"]
    assert theirs["examples"] == ours["examples"] == 7
    assert (theirs["acc"], theirs["acc_norm"]) == (ours["acc"], ours["acc_norm"])


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
    assert_same_choices(tiny_model, tiny_tokenizer, "piqa")
    assert tiny_model.lm_head is head and "tie_weights" not in tiny_model.__dict__
