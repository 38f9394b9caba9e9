"""Run-time speed and memory of compressed models on the CPU, side by side with torch (issue 20).

    python benchmarks/runtime.py             # writes benchmarks/results/runtime.json (~8 min on 2 cores)
    python benchmarks/runtime.py --render    # prints the BENCHMARKS.md table from that JSON

Rows, each in a fresh process with the same thread count, in ``--rounds`` interleaved rounds
(figures are medians over rounds; this machine is shared and one row alone varied by more than 40%
between runs), all on the default model: torch fp32,
torch bf16, and llmpress checkpoints of each weight kind, run from their packed weights by the
registry's kernels (``kernel="auto"``, the default): palette per row (plain k-means, 3 and 2
bits), uniform codes (RTN, group 64, 3 and 2 bits) and ShiftAdd binary codes (lat 3-bit, the
setting of baseline.py's row). The checkpoints are built once into $LLMPRESS_CACHE/bench-runtime.
The last row is llama.cpp on the default model's own Q4_1 GGUF (the file llmpress converts),
through llama-cpp-python 0.3.36 built once from its pinned sdist into a benchmark-only venv under
$LLMPRESS_CACHE/bench-llamacpp (``benchmarks/llamacpp_row.py``; ``--no-llama-cpp`` skips it):
decode, prefill and peak RSS measured the same way; its linear layers are not timed apart.

Measured per row, batch 1:
- ``decode_ms``: greedy decoding of ``--new-tokens`` tokens after a short prompt, with the KV
  cache, end to end through transformers' ``generate`` (ms per token);
- ``linears_ms``: one sweep over every decoder linear layer in model order with a one-token
  input (what decoding a token costs in those layers), and per shape the ms of one call, the
  layers of a shape timed inside the sweep so that each sees the cache state decoding leaves;
- ``head_ms``: the output head (tied to the float embedding in every row);
- ``prefill_ms``: one forward of ``--prefill`` tokens without a cache;
- ``linear_resident_bytes``: what the decoder linears hold in memory after all of the above
  (buffers, parameters and anything a kernel cached) against ``linear_stored_bytes``;
- ``peak_rss_mb``: the process's peak resident memory before the dense check below;
- ``bound_ms``: the bytes-moved bound of the linears, their stored bytes over this machine's
  measured read bandwidth (a sum over a 512 MB tensor, same threads).
Afterwards each compressed row switches to the dense path (``kernel="dense"``) and decodes the
same prompt again: ``same_tokens_as_dense`` records whether all greedy tokens agree.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from llmpress import api
from llmpress.cache import cache_dir

RESULTS = Path(__file__).parent / "results" / "runtime.json"
PROMPT = "The history of the city begins"
CALIB = {"calib_samples": 32, "calib_seqlen": 512, "calib_seed": 0}
CHECKPOINTS = {  # name -> (method, settings)
    "palette 3-bit per row": ("kmeans", {"bits": 3, "group_size": 1}),
    "uniform 3-bit g64": ("rtn", {"bits": 3, "group_size": 64}),
    "shiftadd lat 3-bit": ("shiftadd", {"bits": 3, "mode": "lat", "row_group": 32, "terms": 2, **CALIB}),
    "palette 2-bit per row": ("kmeans", {"bits": 2, "group_size": 1}),
    "uniform 2-bit g64": ("rtn", {"bits": 2, "group_size": 64}),
}
LLAMA_CPP = "llama.cpp Q4_1"  # the default model's own GGUF, run by llama-cpp-python
ROWS = ["torch fp32", "torch bf16", *CHECKPOINTS, LLAMA_CPP]
# llama-cpp-python, built from its sdist into a benchmark-only venv (never an llmpress dependency).
LLAMA_CPP_PYTHON = ("llama-cpp-python", "0.3.36", "llama_cpp_python-0.3.36.tar.gz",
                    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
GGUF_LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
SHAPES = {"q_proj": "576x576", "k_proj": "192x576", "gate_proj": "1536x576", "down_proj": "576x1536"}


def _work(name: str) -> Path:
    return cache_dir("bench-runtime") / name.replace(" ", "_")


def llama_cpp_python() -> Path:
    """The Python of a venv holding llama-cpp-python built from its pinned sdist (-march=native via
    GGML_NATIVE), created once under $LLMPRESS_CACHE/bench-llamacpp; about 10 minutes on 2 cores."""
    from llmpress.cache import pip_download, sha256_file

    package, version, filename, digest = LLAMA_CPP_PYTHON
    venv = cache_dir("bench-llamacpp") / f"venv-{version}"
    python = venv / "bin" / "python"
    if python.is_file() and subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0:
        return python
    sdist = pip_download(f"{package}=={version}", cache_dir("downloads"), wanted=filename, purpose="llama.cpp row")
    if sha256_file(sdist) != digest:
        raise SystemExit(f"{sdist} does not have the pinned sha256 {digest}; delete it and run again")
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    env = {**__import__("os").environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2",
           "CMAKE_ARGS": "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"}
    print(f"building {package} {version} from its sdist into {venv} (once, about 10 minutes)", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", sdist], check=True, env=env)
    return python


def gguf_linear_bytes(path: Path) -> int:
    """Stored bytes of the decoder linear weights in a GGUF (Q4_1 blocks: 4-bit codes, fp16 scale and min)."""
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors
               if t.name.startswith("blk.") and t.name.split(".")[2] in GGUF_LINEARS)


def run_llama_cpp(new_tokens: int, prefill: int, threads: int) -> dict:
    """The llama.cpp row: decode and prefill as for the torch rows, on the default model's GGUF."""
    from llmpress.models.default import find_gguf

    gguf = find_gguf()
    cmd = [str(llama_cpp_python()), str(Path(__file__).parent / "llamacpp_row.py"), str(gguf), "--prompt", PROMPT,
           "--threads", str(threads), "--new-tokens", str(new_tokens), "--prefill", str(prefill)]
    r = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
    stored = gguf_linear_bytes(gguf)
    return {"row": LLAMA_CPP, **r, "linears_ms": None, "shape_ms": None, "head_ms": None,
            "linear_stored_bytes": stored, "linear_resident_bytes": None, "gguf": gguf.name,
            "kernels": [f"llama.cpp {r['llama_cpp_python']} (llama-cpp-python), GGML_NATIVE"]}


def read_bandwidth_gbs(threads: int) -> float:
    """GB/s of a streaming read (a float32 sum over 512 MB), best of 5."""
    torch.set_num_threads(threads)
    big = torch.ones(128 << 20)
    big.sum()
    best = min(_timed(big.sum) for _ in range(5))
    return big.numel() * 4 / best / 1e9


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at exec, so a
    row does not inherit the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _decoder_linears(model) -> list[tuple[str, torch.nn.Module]]:
    from llmpress.nn import CompressedLinear

    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, CompressedLinear)) and ".layers." in n]


def _bytes(m, resident: bool) -> int:
    from llmpress.nn import FormatModule

    if isinstance(m, FormatModule):
        return m.resident_bytes if resident else m.nbytes
    return sum(t.numel() * t.element_size() for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)))


def sweep(model, dtype: torch.dtype, repeats: int) -> tuple[float, dict[str, float]]:
    """ms of one pass over every decoder linear (one token), and ms per call per shape (median of repeats)."""
    layers = _decoder_linears(model)
    totals, per_shape = [], {k: [] for k in SHAPES}
    xs = {m.in_features: torch.randn(1, m.in_features, dtype=dtype) for _, m in layers}
    with torch.no_grad():
        for rep in range(repeats + 1):
            shape_t = {k: 0.0 for k in SHAPES}
            start = time.perf_counter()
            for name, m in layers:
                t0 = time.perf_counter()
                m(xs[m.in_features])
                kind = name.rsplit(".", 1)[-1]
                if kind in shape_t:
                    shape_t[kind] += time.perf_counter() - t0
            if rep:  # the first pass warms up (and builds kernels)
                totals.append(time.perf_counter() - start)
                for k, v in shape_t.items():
                    per_shape[k].append(v / sum(1 for n, _ in layers if n.endswith("." + k)))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return 1000 * med(totals), {k: 1000 * med(v) for k, v in per_shape.items()}


def _generate(model, ids, new_tokens: int) -> tuple[float, list[int]]:
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False)
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        seconds = time.perf_counter() - start
    return 1000 * seconds / new_tokens, out[0, ids.shape[1]:].tolist()


def run_row(row: str, new_tokens: int, prefill: int, threads: int, repeats: int) -> dict:
    from llmpress.nn import FormatModule

    torch.set_num_threads(threads)
    loaded = api.load("default" if row.startswith("torch") else _work(row))
    model, tok = loaded.model.eval(), loaded.tokenizer
    dtype = torch.bfloat16 if row == "torch bf16" else torch.float32
    model.to(dtype)
    ids = tok(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    decode_ms, tokens = _generate(model, ids, new_tokens)
    linears_ms, shape_ms = sweep(model, dtype, repeats)
    head = model.get_output_embeddings()
    h = torch.randn(1, head.in_features, dtype=dtype)
    with torch.no_grad():
        head(h)
        head_ms = 1000 * sorted(_timed(lambda: head(h)) for _ in range(repeats))[repeats // 2]
        x = torch.randint(0, len(tok), (1, prefill), generator=torch.Generator().manual_seed(0))
        model(input_ids=x[:, :32], use_cache=False)
        prefill_ms = 1000 * _timed(lambda: model(input_ids=x, use_cache=False))
    layers = _decoder_linears(model)
    kernels = sorted({f"{type(m).__name__}: " + ", ".join(f"{k}={v}" for k, v in m.kernel_names().items())
                      for _, m in layers if isinstance(m, FormatModule)})
    out = {"row": row, "decode_ms": decode_ms, "linears_ms": linears_ms, "shape_ms": shape_ms, "head_ms": head_ms,
           "prefill_ms": prefill_ms, "prefill_tokens": prefill, "new_tokens": new_tokens, "threads": threads,
           "linear_stored_bytes": sum(_bytes(m, False) for _, m in layers),
           "linear_resident_bytes": sum(_bytes(m, True) for _, m in layers),
           "peak_rss_mb": peak_rss_mb(), "kernels": kernels,
           "tokens": tokens, "prompt_ids": ids[0].tolist()}
    if not row.startswith("torch"):
        for m in model.modules():
            if isinstance(m, FormatModule):
                m.kernel = "dense"
        out["same_tokens_as_dense"] = _generate(model, ids, new_tokens)[1] == tokens
    return out


TIMINGS = ("decode_ms", "linears_ms", "head_ms", "prefill_ms")


def combine(runs: list[dict]) -> dict:
    """One row from its rounds: the median of each timing, the worst peak RSS, and the token check
    of every round; the rounds themselves are kept."""
    median = statistics.median
    out = dict(runs[0])
    for key in TIMINGS:
        out[key] = None if runs[0][key] is None else median([r[key] for r in runs])
    if runs[0]["shape_ms"] is not None:
        out["shape_ms"] = {k: median([r["shape_ms"][k] for r in runs]) for k in runs[0]["shape_ms"]}
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    if "same_tokens_as_dense" in out:
        out["same_tokens_as_dense"] = all(r["same_tokens_as_dense"] for r in runs)
    out["rounds"] = [{**{k: r[k] for k in TIMINGS}, "shape_ms": r["shape_ms"]} for r in runs]
    return out


def markdown(data: dict) -> str:
    fp32 = next(r for r in data["rows"] if r["row"] == "torch fp32")
    head = ("| model | linears resident / stored (MB) | peak RSS (MB) | linears ms/token (bound) | "
            "x fp32 | GEMV us " + " / ".join(SHAPES.values()) + " | head ms | decode ms/token | x fp32 | "
            f"prefill {data['prefill']} ms | x fp32 | same tokens as dense |")
    lines = [head, "|" + "---|" * 12]

    def num(value, spec: str, scale: float = 1.0) -> str:
        return "-" if value is None else format(value * scale, spec)

    def ratio(key: str, r: dict, inverse: bool = False) -> str:
        if r[key] is None:
            return "-"
        return f"{(r[key] / fp32[key]) if inverse else (fp32[key] / r[key]):.2f}"

    for r in data["rows"]:
        shapes = "-" if r["shape_ms"] is None else " / ".join(f"{1000 * r['shape_ms'][k]:.0f}" for k in SHAPES)
        same = {True: "yes", False: "**no**", None: "-"}[r.get("same_tokens_as_dense")]
        if "same_tokens_as_fp32" in r:
            same = f"vs fp32: {'yes' if r['same_tokens_as_fp32'] else 'no'}"
        lines.append(f"| {r['row']} | {num(r['linear_resident_bytes'], '.1f', 1e-6)} / "
                     f"{r['linear_stored_bytes'] / 1e6:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{num(r['linears_ms'], '.1f')} ({r['bound_ms']:.1f}) | {ratio('linears_ms', r)} | {shapes} | "
                     f"{num(r['head_ms'], '.1f')} | {r['decode_ms']:.1f} | {ratio('decode_ms', r)} | "
                     f"{r['prefill_ms']:.0f} | {ratio('prefill_ms', r, inverse=True)} | {same} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3, help="runs of every row, interleaved; figures are medians")
    ap.add_argument("--only", action="append", choices=ROWS, help="measure these rows (default: all)")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp row (and its one-time build)")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row in this process
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(markdown(json.loads(out.read_text())))
        return
    if args.no_llama_cpp and args.only is None:
        args.only = [r for r in ROWS if r != LLAMA_CPP]
    if args.row == LLAMA_CPP:
        print(json.dumps(run_llama_cpp(args.new_tokens, args.prefill, args.threads)))
        return
    if args.row:
        print(json.dumps(run_row(args.row, args.new_tokens, args.prefill, args.threads, args.repeats)))
        return
    rows = args.only or ROWS
    for name in rows:
        if name in CHECKPOINTS and not (_work(name) / "llmpress.json").is_file():
            method, settings = CHECKPOINTS[name]
            api.compress("default", method, out=_work(name), overwrite=True, **settings)
    bandwidth = read_bandwidth_gbs(args.threads)
    data = json.loads(out.read_text()) if out.is_file() and args.only else {"rows": []}
    runs: dict[str, list[dict]] = {name: [] for name in rows}
    # Rounds interleave the rows, so a slow spell of this shared machine hits one round of every
    # row rather than every round of one row; each figure is the median over rounds.
    for round_ in range(args.rounds):
        for name in rows:
            cmd = [sys.executable, __file__, "--row", name, "--new-tokens", str(args.new_tokens),
                   "--prefill", str(args.prefill), "--threads", str(args.threads), "--repeats", str(args.repeats)]
            done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = combine(runs[name])
            fp32 = runs.get("torch fp32")
            if name == LLAMA_CPP and fp32 and r["prompt_ids"] == fp32[0].get("prompt_ids"):
                # the same greedy continuation as the float model dequantized from this very GGUF?
                r["same_tokens_as_fp32"] = r["tokens"] == fp32[0]["tokens"]
            r["bound_ms"] = 1000 * r["linear_stored_bytes"] / (bandwidth * 1e9)
            data["rows"] = [x for x in data["rows"] if x["row"] != name] + [r]
            data["rows"].sort(key=lambda x: ROWS.index(x["row"]))
            data.update({"benchmark": "runtime", "command": "python " + " ".join(sys.argv), "machine": api.machine(),
                         "read_bandwidth_gbs": bandwidth, "prompt": PROMPT, "prefill": args.prefill,
                         "rounds": args.rounds,
                         "checkpoints": {n: {"method": m, "settings": s} for n, (m, s) in CHECKPOINTS.items()},
                         "notes": "each row ran in a fresh process per round, rows interleaved; timings are the "
                                  "median over rounds (each round's under 'rounds'); the output head is the float "
                                  "embedding's tied head in every row (not compressed by these methods)"})
            api.write_json(out, data)
            print(f"round {round_ + 1}/{args.rounds}", name,
                  {k: round(v, 2) for k, v in runs[name][-1].items() if k in TIMINGS and v is not None}, flush=True)
    print(markdown(data))


if __name__ == "__main__":
    main()
