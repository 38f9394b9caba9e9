"""BIG-bench tasks read straight from the ``bigbench==1.0.0`` sdist.

The sdist (358 MB) is fetched once with pip into the cache and never installed or extracted
whole: the members a caller asks for are read from the tarball in one pass and cached as single
files under ``$LLMPRESS_CACHE/bigbench/``. A task is named by its folder under
``benchmark_tasks``, e.g. ``social_iqa`` or ``arithmetic/2_digit_addition``.
"""

from __future__ import annotations

import functools
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from llmpress.cache import atomic_write_bytes, cache_dir, pip_download
from llmpress.errors import ConfigError

REQUIREMENT = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
TASKS_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"


def sdist_path() -> Path:
    path = cache_dir("downloads") / SDIST_NAME
    if not path.is_file():
        pip_download(REQUIREMENT, path.parent, sdist=True)
    return path


def _member_cache() -> Path:
    return cache_dir("bigbench")


def task_names() -> list[str]:
    """Every folder under ``benchmark_tasks`` that holds a task.json (cached after the first scan)."""
    index = _member_cache() / "tasks.txt"
    if not index.is_file():
        with tarfile.open(sdist_path(), "r:gz") as tar:
            names = sorted(m.name[len(TASKS_PREFIX):-len("/task.json")] for m in tar
                           if m.name.startswith(TASKS_PREFIX) and m.name.endswith("/task.json"))
        atomic_write_bytes(index, "\n".join(names).encode())
    return index.read_text().split("\n")


def read_members(relpaths: list[str]) -> dict[str, bytes]:
    """Bytes of each file under ``benchmark_tasks`` (e.g. ``social_iqa/task.json``)."""
    root = _member_cache()
    missing = {p for p in relpaths if not (root / p).is_file()}
    if missing:
        with tarfile.open(sdist_path(), "r:gz") as tar, \
                tqdm(total=len(missing), desc="reading BIG-bench", unit="file", leave=False) as bar:
            for member in tar:
                rel = member.name[len(TASKS_PREFIX):]
                if member.isfile() and rel in missing:
                    atomic_write_bytes(root / rel, tar.extractfile(member).read())
                    missing.discard(rel)
                    bar.update()
                    if not missing:
                        break
        if missing:
            raise ConfigError(f"not in BIG-bench 1.0.0: {sorted(missing)}")
    return {p: (root / p).read_bytes() for p in relpaths}


def load_task(name: str) -> dict:
    """The parsed task.json of one task (``name`` as in :func:`task_names`); treat it as read-only."""
    name = name.strip("/")
    rel = f"{name}/task.json"
    if not (_member_cache() / rel).is_file() and name not in task_names():
        close = [t for t in task_names() if t.startswith(name + "/")]
        hint = f" it has subtasks: {close[:8]}{' ...' if len(close) > 8 else ''}" if close else ""
        raise ConfigError(f"unknown BIG-bench task {name!r};{hint or ' see llmpress.data.bigbench.task_names()'}")
    read_members([rel])
    path = _member_cache() / rel
    return _parse(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _parse(path: str, mtime_ns: int) -> dict:
    """Parsed task.json, kept in memory: wiki-en's source file is 50 MB of JSON (~1 s to parse)."""
    with open(path, "rb") as f:
        return json.load(f)


@dataclass(frozen=True)
class MultipleChoice:
    """``context`` then one of ``choices`` (each starts with its separating space); ``gold`` indexes the best."""

    context: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class Generation:
    prompt: str
    targets: tuple[str, ...]


def _prompt(task: dict, example: dict, with_choices: bool) -> str:
    """BIG-bench's zero-shot JSON-task formatting: prefix, "Q: input", optional choices, "A:"."""
    q = task.get("example_input_prefix", "\nQ: ")
    a = task.get("example_output_prefix", "\nA: ").rstrip(" ")
    choice_prefix = task.get("choice_prefix", "\n  choice: ")
    text = task.get("task_prefix", "") + q + example["input"]
    if with_choices:
        text += "".join(choice_prefix + c for c in example["target_scores"])
    return (text + a).lstrip("\n")


def multiple_choice(task: dict) -> list[MultipleChoice]:
    """Examples with ``target_scores``; gold = the highest-scored choice."""
    append = task.get("append_choices_to_input", True)
    out = []
    for ex in task["examples"]:
        scores = ex.get("target_scores")
        if not scores:
            continue
        choices = tuple(scores)
        gold = max(range(len(choices)), key=lambda i: scores[choices[i]])
        out.append(MultipleChoice(_prompt(task, ex, append), tuple(" " + c for c in choices), gold))
    if not out:
        raise ConfigError(f"task {task.get('name')!r} has no multiple-choice examples (no target_scores)")
    return out


def generation(task: dict) -> list[Generation]:
    """Examples with a ``target`` (a string or a list of accepted strings)."""
    out = []
    for ex in task["examples"]:
        target = ex.get("target")
        if target is None:
            continue
        targets = (target,) if isinstance(target, str) else tuple(target)
        out.append(Generation(_prompt(task, ex, False), targets))
    if not out:
        raise ConfigError(f"task {task.get('name')!r} has no generation examples (no target)")
    return out
