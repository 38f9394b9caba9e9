"""Speed and memory of ShiftAdd inference kernels on the default model (issue 5).

    python benchmarks/shiftadd_kernel.py                 # writes benchmarks/results/shiftadd_kernel.json
    python benchmarks/shiftadd_kernel.py --render        # prints the BENCHMARKS.md table from that JSON

One ShiftAdd checkpoint (acc 3-bit, the quick calibration profile; made by benchmarks/shiftadd.py,
or compressed here when its work directory is missing) runs three ways, each in a fresh process:
- ``fp32``: the uncompressed default model (the reference);
- ``dense``: ShiftAddLinear decoding its weight once and multiplying by it (llmpress's default);
- ``native``: the compiled look-up-table kernel, reading the packed bit-planes on every call;
- ``lut``: the same look-up product in plain torch (the readable reference), decoding only.
Measured per row: greedy decoding of ``--new-tokens`` tokens after a short prompt, batch 1, with
the KV cache (ms per token), one prefill forward of ``--prefill`` tokens (ms), the process's
peak resident memory, and the bytes the linear layers hold (parameters, buffers, decoded copies).
The three ShiftAdd rows must produce the same greedy tokens (checked and recorded).
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
WORK = Path("/tmp/llmpress-shiftadd-bench/shiftadd_acc_3-bit")
SETTINGS = {"method": "shiftadd", "bits": 3, "mode": "acc", "row_group": 192, "terms": 2,
            "calib_samples": 32, "calib_seqlen": 512, "calib_seed": 0}
PROMPT = "The history of the city begins"
ROWS = ("fp32", "dense", "native", "lut")


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


def run_row(kind: str, checkpoint: Path, new_tokens: int, prefill: int, threads: int) -> dict:
    from llmpress.nn.shiftadd_linear import set_kernel

    torch.set_num_threads(threads)
    loaded = api.load("default" if kind == "fp32" else checkpoint)
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
    lines = ["| kernel | linear layers in memory (MB) | peak RSS (MB) | decode ms/token | prefill ms "
             f"({data['prefill']} tokens) |", "|---|---|---|---|---|"]
    for r in data["rows"]:
        prefill = f"{r['prefill_ms']:.0f}" if r["prefill_ms"] is not None else "-"
        lines.append(f"| {r['row']} | {r['linear_bytes'] / 1e6:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['ms_per_token']:.1f} | {prefill} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--checkpoint", default=str(WORK))
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row in this process
    args = ap.parse_args()
    out, checkpoint = Path(args.out), Path(args.checkpoint)
    if args.render:
        print(markdown(json.loads(out.read_text())))
        return
    if args.row:
        print(json.dumps(run_row(args.row, checkpoint, args.new_tokens, args.prefill, args.threads)))
        return
    if not (checkpoint / "llmpress.json").is_file():
        settings = dict(SETTINGS)
        api.compress("default", settings.pop("method"), out=checkpoint, overwrite=True, **settings)
    rows = []
    for kind in ROWS:
        cmd = [sys.executable, __file__, "--row", kind, "--checkpoint", str(checkpoint), "--new-tokens",
               str(args.new_tokens), "--prefill", str(args.prefill), "--threads", str(args.threads)]
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1]["row"], {k: v for k, v in rows[-1].items() if k != "tokens"}, flush=True)
    same = all(r["tokens"] == rows[1]["tokens"] for r in rows[1:])
    data = {"benchmark": "shiftadd_kernel", "command": "python " + " ".join(sys.argv), "machine": api.machine(),
            "checkpoint": str(checkpoint), "settings": SETTINGS, "prompt": PROMPT, "prefill": args.prefill,
            "same_tokens_across_shiftadd_kernels": same, "rows": rows,
            "notes": "each row ran in a fresh process; linear_bytes counts the decoder linears' parameters, "
                     "buffers and decoded weight copies (the tied lm_head is left out)"}
    api.write_json(out, data)
    print(markdown(data))
    print("same greedy tokens from every ShiftAdd kernel:", same)


if __name__ == "__main__":
    main()
