import json

import pytest

from llmpress.data import bigbench
from llmpress.errors import ConfigError


def test_reads_single_members_and_caches_them(fake_cache):
    raw = bigbench.read_members(["social_iqa/task.json"])["social_iqa/task.json"]
    assert json.loads(raw)["name"] == "social_iqa"
    assert (fake_cache / "bigbench" / "social_iqa" / "task.json").is_file()
    assert not (fake_cache / "bigbench" / "hyperbaton").exists()  # nothing else extracted
    (fake_cache / "downloads" / "bigbench-1.0.0.tar.gz").unlink()
    assert bigbench.read_members(["social_iqa/task.json"])["social_iqa/task.json"] == raw


def test_task_names_and_unknown_task(fake_cache):
    names = bigbench.task_names()
    assert "social_iqa" in names and "arithmetic/2_digit_addition" in names
    with pytest.raises(ConfigError, match="subtasks"):
        bigbench.load_task("arithmetic")
    with pytest.raises(ConfigError, match="unknown BIG-bench task"):
        bigbench.load_task("no_such_task")


def test_multiple_choice_formatting(fake_cache):
    task = bigbench.load_task("social_iqa")
    items = bigbench.multiple_choice(task)
    ex, first = items[0], task["examples"][0]
    assert ex.context.startswith("Q: " + first["input"]) and ex.context.endswith("\nA:")
    assert all(f"\n  choice: {c}" in ex.context for c in first["target_scores"])
    assert [c[1:] for c in ex.choices] == list(first["target_scores"]) and ex.gold == 1
    no_choices = bigbench.multiple_choice(bigbench.load_task("hyperbaton"))[0]
    assert "choice:" not in no_choices.context


def test_generation_examples(fake_cache):
    items = bigbench.generation(bigbench.load_task("arithmetic/2_digit_addition"))
    assert items[0].prompt == "Q: What is 10 addition 20?\nA:" and items[0].targets == ("30",)
    with pytest.raises(ConfigError, match="no multiple-choice"):
        bigbench.multiple_choice(bigbench.load_task("arithmetic/2_digit_addition"))
