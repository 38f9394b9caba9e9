"""lm-evaluation-harness on an in-memory model, with BIG-bench multiple choice as local harness tasks.

Each BIG-bench task becomes a harness task ``llmpress_bigbench_<name>`` (``/`` becomes ``_``)
whose documents are the project's own :class:`~llmpress.data.bigbench.MultipleChoice` examples,
written as JSON lines beside a generated task config under ``$LLMPRESS_CACHE/harness/``. The
harness therefore sees the same context and choice strings as the built-in evaluator
(:mod:`llmpress.eval.multiple_choice`), and the two agree:

- requests: ``target_delimiter`` is empty and each choice keeps its leading space, so both send
  (context, " choice"); both tokenize them the same way (trailing context whitespace moved to the
  continuation, no special tokens) and score the last ``max_length`` tokens of context + choice.
- ``acc``: the same argmax of summed log-likelihoods.
- the built-in ``acc_norm`` divides by the choice's UTF-8 byte length, which is the harness's
  ``acc_bytes``. The harness's own ``acc_norm`` divides by the length in characters; the two differ
  only on examples with non-ASCII choices, counted in ``non_ascii_examples``. Because the space
  is part of the choice, both lengths include it; a stock harness task (delimiter " ", bare
  choices) would leave it out.

Only the arithmetic may differ: the harness pads batches on the right without an attention mask
and groups requests differently, so log-likelihoods can differ by float rounding (~1e-5) and a
near tie can flip. ``harness_agreement.py`` in benchmarks/ measures this.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from llmpress.cache import atomic_write_bytes, cache_dir
from llmpress.data.bigbench import MultipleChoice, load_task, multiple_choice
from llmpress.errors import ConfigError

PREFIX = "llmpress_bigbench_"
CONFIG_VERSION = 1  # bump when the document or config layout changes


def harness_name(task: str) -> str:
    """Harness task name of a BIG-bench task (``social_iqa`` -> ``llmpress_bigbench_social_iqa``)."""
    return task if task.startswith(PREFIX) else PREFIX + task.strip("/").replace("/", "_")


def _bigbench_name(task: str) -> str:
    # A prefixed name cannot be mapped back when the task had a "/", so those go by their BIG-bench name.
    return task[len(PREFIX):] if task.startswith(PREFIX) else task


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


def write_task(task: str, examples: list[MultipleChoice] | None = None, root: Path | None = None) -> Path:
    """Write the harness task folder (documents + config) of BIG-bench ``task``; return the folder."""
    name = harness_name(task)
    examples = examples if examples is not None else multiple_choice(load_task(_bigbench_name(task)))
    folder = (root or cache_dir("harness", "tasks")) / name
    docs = folder / "test.jsonl"
    lines = (json.dumps({"context": ex.context, "choices": list(ex.choices), "gold": ex.gold}, ensure_ascii=False)
             for ex in examples)
    atomic_write_bytes(docs, ("\n".join(lines) + "\n").encode("utf-8"))
    config = {
        "task": name,
        "dataset_path": "json",
        # datasets caches its Arrow copy here instead of ~/.cache/huggingface
        "dataset_kwargs": {"data_files": {"test": str(docs)}, "cache_dir": str(folder / "hf-cache")},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": "",  # the choices carry their separating space (see module docstring)
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("acc", "acc_norm", "acc_bytes")],
        "metadata": {"version": CONFIG_VERSION, "source": f"BIG-bench 1.0.0 {_bigbench_name(task)}"},
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


def evaluate_harness(model, tokenizer, tasks: list[str], limit: int | None = None, batch_size: int = 16,
                     max_length: int = 2048, samples: bool = False, lm=None) -> dict:
    """Run the harness on BIG-bench multiple-choice ``tasks``; one result dict per task name given.

    ``samples`` adds per-example log-likelihoods (``loglikelihoods``, one list per example) and
    gold indices. ``lm`` reuses an HFLM from :func:`wrap_model`.
    """
    lm_eval, _, TaskManager = _import_lm_eval()
    _quiet_harness_logs()  # the task loading logs too, and lm may come from the caller
    lm = lm or wrap_model(model, tokenizer, batch_size=batch_size, max_length=max_length)
    out = {}
    for task in tasks:
        examples = multiple_choice(load_task(_bigbench_name(task)))
        folder = write_task(task, examples)
        name = harness_name(task)
        manager = TaskManager(include_path=str(folder), include_defaults=False)
        start = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, num_fewshot=0, limit=limit,
                                      log_samples=samples, bootstrap_iters=0)
        seconds = time.perf_counter() - start
        metrics = res["results"][name]
        used = examples[:limit] if limit else examples
        r = {"harness_task": name, "acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"],
             "acc_bytes": metrics["acc_bytes,none"], "examples": len(used),
             "non_ascii_examples": sum(any(not c.isascii() for c in ex.choices) for ex in used),
             "seconds": seconds}
        if samples:
            rows = sorted(res["samples"][name], key=lambda s: s["doc_id"])
            r["loglikelihoods"] = [[float(ll) for ll, _ in s["filtered_resps"]] for s in rows]
            r["gold"] = [int(s["target"]) for s in rows]
        out[task] = r
    return out
