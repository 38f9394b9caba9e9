"""llama.cpp's own view of an exported GGUF, run by the benchmark-only venv's Python (see export.py).

    VENV/bin/python benchmarks/llamacpp_eval.py MODEL.gguf INPUTS.json

INPUTS.json: {"prompt": [ids], "new_tokens": n, "windows": [[ids] * seqlen, ...], "threads": t}.
Prints one JSON line: the greedy continuation of the prompt (argmax of llama.cpp's logits, one
token per eval, KV cache) and the summed next-token negative log-likelihood of every window, each
window evaluated from an empty cache exactly as llmpress's perplexity does (tokens 1.. given 0..).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from llamacpp_open import open_gguf


def greedy(llm, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation read from ``scores`` (with logits_all every evaluated row is there)."""
    llm.reset()
    llm.eval(prompt)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def window_nll(llm, ids: list[int]) -> float:
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum())


def main() -> None:
    import llama_cpp

    path, inputs = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    seqlen = max((len(w) for w in inputs["windows"]), default=16)
    llm = open_gguf(path, n_threads=inputs["threads"], n_threads_batch=inputs["threads"],
                    n_ctx=max(seqlen, len(inputs["prompt"]) + inputs["new_tokens"] + 8), n_batch=seqlen,
                    n_ubatch=seqlen, logits_all=True, verbose=False, seed=0)
    tokens = greedy(llm, inputs["prompt"], inputs["new_tokens"])
    nll = [window_nll(llm, w) for w in inputs["windows"]]
    print(json.dumps({"tokens": tokens, "window_nll": nll, "llama_cpp_python": llama_cpp.__version__}))


if __name__ == "__main__":
    main()
