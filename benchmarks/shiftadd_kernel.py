"""Speed and memory of ShiftAdd inference kernels on the default model (issue 5).

    python benchmarks/shiftadd_kernel.py                 # writes benchmarks/results/shiftadd_kernel.json
    python benchmarks/shiftadd_kernel.py --render        # prints the BENCHMARKS.md table from that JSON

Two 3-bit ShiftAdd checkpoints with the settings of the ``shiftadd acc/lat 3-bit`` rows of
benchmarks/baseline.py (quick calibration profile; compressed here when the work directory lacks them): ``lat`` (scales per 8-column block, the kernel-friendly
layout: one table per token serves every plane) and ``acc`` (scales per column: a table per plane
and row block). Each runs with every kernel, each in a fresh process, against the fp32 model:
- ``fp32``: the uncompressed default model (the reference);
- ``dense``: ShiftAddLinear decoding its weight once and keeping it (the default before the
  packed kernels of benchmarks/runtime.py; now ``kernel="dense"``);
- ``native``: the compiled look-up-table kernel on the packed bit-planes (for 16 tokens or more
  per call, a weight decoded for that call only);
- ``lut``: the same look-up product in plain torch (the readable reference; decoding only).
Measured per row: greedy decoding of ``--new-tokens`` tokens after a short prompt, batch 1, with
the KV cache (ms per token), one prefill forward of ``--prefill`` tokens (ms), the process's
peak resident memory, and the bytes the decoder's linear layers hold (parameters, buffers,
decoded copies). Every kernel of one checkpoint must produce the same greedy tokens (checked).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from llmpress import api

RESULTS = Path(__file__).parent / "results" / "shiftadd_kernel.json"
WORK = Path("/tmp/llmpress-shiftadd-bench")
CALIB = {"calib_samples": 32, "calib_seqlen": 512, "calib_seed": 0}
CHECKPOINTS = {  # mode -> (work directory name, settings): the 3-bit ShiftAdd rows of benchmarks/baseline.py
    "lat": ("shiftadd_lat_3-bit", {"bits": 3, "mode": "lat", "row_group": 32, "terms": 2}),
    "acc": ("shiftadd_acc_3-bit", {"bits": 3, "mode": "acc", "row_group": 192, "terms": 2}),
}
PROMPT = "The history of the city begins"
ROWS = [("fp32", None), ("dense", "lat"), ("native", "lat"), ("lut", "lat"), ("dense", "acc"), ("native", "acc")]


def linear_bytes(model: torch.nn.Module) -> int:
    """Bytes the decoder's linear layers hold in memory, decoded weight copies included."""
    from llmpress.nn import CompressedLinear

    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and "lm_head" not in getattr(m, "_llmpress_name", ""):
            total += sum(t.numel() * t.element_size() for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)))
        elif isinstance(m, CompressedLinear):
            total += sum(t.numel() * t.element_size() for t in m.buffers(recurse=False))
            if m._dense is not None:
                total += m._dense.numel() * m._dense.element_size()
    return total


def run_row(kind: str, checkpoint: Path | None, new_tokens: int, prefill: int, threads: int) -> dict:
    from llmpress.nn.shiftadd_linear import set_kernel

    torch.set_num_threads(threads)
    loaded = api.load("default" if checkpoint is None else checkpoint)
    model, tok = loaded.model.eval(), loaded.tokenizer
    if kind != "fp32":
        set_kernel(model, kind)
    # the tied head is not a decoder linear: leave it out of the count
    for name, m in model.named_modules():
        m._llmpress_name = name
    ids = tok(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up (and a native build, if needed)
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        decode = time.perf_counter() - start
        prefill_s = None
        if kind != "lut":  # the plain-torch reference is for reading, not for long inputs
            x = torch.randint(0, len(tok), (1, prefill), generator=torch.Generator().manual_seed(0))
            start = time.perf_counter()
            model(input_ids=x, use_cache=False)
            prefill_s = time.perf_counter() - start
    return {"row": kind, "ms_per_token": 1000 * decode / new_tokens,
            "prefill_ms": 1000 * prefill_s if prefill_s is not None else None,
            "prefill_tokens": prefill, "new_tokens": new_tokens, "threads": threads,
            "linear_bytes": linear_bytes(model), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tokens": out[0, ids.shape[1]:].tolist()}


def markdown(data: dict) -> str:
    lines = ["| model | kernel | linear layers in memory (MB) | peak RSS (MB) | decode ms/token | prefill ms "
             f"({data['prefill']} tokens) |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        prefill = f"{r['prefill_ms']:.0f}" if r["prefill_ms"] is not None else "-"
        model = f"shiftadd {r['mode']} 3-bit" if r.get("mode") else "fp32"
        lines.append(f"| {model} | {r['row']} | {r['linear_bytes'] / 1e6:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['ms_per_token']:.1f} | {prefill} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default=str(WORK), help="where the checkpoints are kept between runs")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row in this process
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    if args.render:
        print(markdown(json.loads(out.read_text())))
        return
    if args.row:
        ckpt = Path(args.checkpoint) if args.checkpoint else None
        print(json.dumps(run_row(args.row, ckpt, args.new_tokens, args.prefill, args.threads)))
        return
    for name, settings in CHECKPOINTS.values():
        if not (work / name / "llmpress.json").is_file():
            api.compress("default", "shiftadd", out=work / name, overwrite=True, **CALIB, **settings)
    rows = []
    for kind, mode in ROWS:
        cmd = [sys.executable, __file__, "--row", kind, "--new-tokens", str(args.new_tokens),
               "--prefill", str(args.prefill), "--threads", str(args.threads)]
        if mode:
            cmd += ["--checkpoint", str(work / CHECKPOINTS[mode][0])]
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "mode": mode})
        print(kind, mode, {k: v for k, v in rows[-1].items() if k != "tokens"}, flush=True)
    same = {mode: all(r["tokens"] == next(x for x in rows if x["mode"] == mode)["tokens"]
                      for r in rows if r["mode"] == mode) for mode in CHECKPOINTS}
    data = {"benchmark": "shiftadd_kernel", "command": "python " + " ".join(sys.argv), "machine": api.machine(),
            "checkpoints": {m: {"path": str(work / n), "settings": {**s, **CALIB}} for m, (n, s) in CHECKPOINTS.items()},
            "prompt": PROMPT, "prefill": args.prefill, "same_tokens_across_kernels": same, "rows": rows,
            "notes": "each row ran in a fresh process; linear_bytes counts the decoder linears' parameters, "
                     "buffers and decoded weight copies (the tied lm_head is left out)"}
    api.write_json(out, data)
    print(markdown(data))
    print("same greedy tokens from every kernel of a checkpoint:", same)


if __name__ == "__main__":
    main()
