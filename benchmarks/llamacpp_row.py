"""One llama.cpp row of benchmarks/runtime.py, run by the benchmark-only venv's Python.

    VENV/bin/python benchmarks/llamacpp_row.py GGUF --threads 2 --new-tokens 64 --prefill 512

Runs only llama-cpp-python (built from its sdist by runtime.py, never a dependency of llmpress)
on the GGUF as shipped. Measures what runtime.py measures for torch rows, the same way: greedy
decoding of ``--new-tokens`` tokens after the same prompt (prompt evaluation included, ms per
token, after a 2-token warm-up), one forward of ``--prefill`` seeded random tokens, and the peak
resident memory (the GGUF is memory-mapped, so its touched pages count). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from llamacpp_open import open_gguf


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def greedy(llm, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation: argmax of the last logits, one token per eval (batch 1, KV cache).
    The logits are read from the context (llama-cpp-python 0.3.36 copies them into ``scores`` only
    with ``logits_all``, which would also copy every prefill row)."""
    import numpy as np

    llm.reset()
    llm.eval(prompt)
    out, vocab = [], llm.n_vocab()
    for _ in range(n):
        token = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))
        out.append(token)
        llm.eval([token])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--prompt", default="The history of the city begins")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=512)
    args = ap.parse_args()
    import llama_cpp

    llm = open_gguf(args.gguf, n_threads=args.threads, n_threads_batch=args.threads,
                    n_ctx=max(1024, args.prefill + 8), n_batch=args.prefill, n_ubatch=args.prefill,
                          logits_all=False, verbose=False, seed=0)
    prompt = llm.tokenize(args.prompt.encode(), add_bos=False, special=False)
    greedy(llm, prompt, 2)  # warm-up
    start = time.perf_counter()
    tokens = greedy(llm, prompt, args.new_tokens)
    decode_ms = 1000 * (time.perf_counter() - start) / args.new_tokens
    rng = random.Random(0)
    batch = [rng.randrange(llm.n_vocab()) for _ in range(args.prefill)]
    llm.reset()
    llm.eval(batch[:32])
    llm.reset()
    start = time.perf_counter()
    llm.eval(batch)
    prefill_ms = 1000 * (time.perf_counter() - start)
    print(json.dumps({"decode_ms": decode_ms, "prefill_ms": prefill_ms, "prefill_tokens": args.prefill,
                      "new_tokens": args.new_tokens, "threads": args.threads, "peak_rss_mb": peak_rss_mb(),
                      "prompt_ids": prompt, "tokens": tokens, "llama_cpp_python": llama_cpp.__version__}))


if __name__ == "__main__":
    main()
