"""Mutations of JSON trees and the guards a fuzzed load runs under (memory, time)."""

from __future__ import annotations

import contextlib
import resource
import signal
from typing import Iterator

from hypothesis import strategies as st

# Values that make loaders misbehave: huge and negative sizes, wrong types, path tricks, names
# llmpress itself uses (so a mutation can move an entry where another belongs).
SPECIAL = st.sampled_from([10**7, 10**12, 2**63, 2**64, -1, 0, 1, 3.7, 1e308, "", "../x", "/etc/passwd",
                           "a/b", "model.safetensors", "uniform", "palette", "CompressedLinear", "F16", "U8",
                           [10**7, 10**7], [0, 10**15], [], {}])
LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) |
        st.text(max_size=12) | SPECIAL)
JSON = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=6)


def paths(tree, prefix=()) -> Iterator[tuple]:
    """Every path to a value inside ``tree`` (dict keys and list indices)."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from paths(v, prefix + (i,))


def mutate(data, tree):
    """Replace, delete or add one value somewhere in ``tree`` (in place where possible); returns the tree."""
    path = data.draw(st.sampled_from(list(paths(tree))), label="path")
    op = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="op")
    if not path:
        return data.draw(JSON, label="whole") if op == "replace" else tree
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "replace":
        parent[key] = data.draw(JSON, label="value")
    elif op == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8), label="new key")] = data.draw(JSON, label="value")
    else:
        parent.insert(key, data.draw(JSON, label="value"))
    return tree


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded(extra_bytes: int, seconds: int = 30) -> Iterator[None]:
    """Run the block with the address space capped at what the process maps now plus
    ``extra_bytes`` (an allocation beyond it fails instead of succeeding lazily), and failing with
    TimeoutError after ``seconds`` (a hang). Limits are restored afterwards (soft limits only)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)

    def timeout(*_):
        raise TimeoutError(f"a load took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, timeout)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)
