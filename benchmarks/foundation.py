"""Foundation baselines on the default model: fp32 and RTN perplexity on wiki-en test.

    python benchmarks/foundation.py            # writes benchmarks/results/foundation.json
    python benchmarks/foundation.py --render   # prints the BENCHMARKS.md table from that JSON

fp32: quick and full profile; RTN at 8/4/3/2 bits (group 128, ragged last group on the
576-wide layers) and 4/3 bits at group 64: quick profile. social_iqa acc / acc_norm (all 1954
examples) for fp32 and RTN 4/3-bit g128. Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from llmpress import api
from llmpress.models.storage import storage_report

RESULTS = Path(__file__).parent / "results" / "foundation.json"


def measure(lm, label: str, bpw: float, size_mb: float, seconds: float, profiles, task: bool) -> dict:
    row = {"method": label, "bits_per_weight": bpw, "size_mb": size_mb, "compress_seconds": seconds}
    for profile in profiles:
        p = api.evaluate(lm, profile=profile)["perplexity"]
        row[f"ppl_{profile}"] = p
    if task:
        row["social_iqa"] = api.evaluate(lm, ppl=False, tasks=["social_iqa"])["tasks"]["social_iqa"]
    print(row, flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| method | bits/weight (linear layers) | size MB | ppl quick | ppl full | social_iqa acc | acc_norm |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        full, siqa = r.get("ppl_full"), r.get("social_iqa")
        cells = [r["method"], f"{r['bits_per_weight']:.3f}", f"{r['size_mb']:.1f}", f"{r['ppl_quick']['ppl']:.2f}",
                 f"{full['ppl']:.2f}" if full else "-",
                 f"{siqa['acc']:.3f}" if siqa else "-", f"{siqa['acc_norm']:.3f}" if siqa else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.out).read_text())["rows"]))
        return
    start = time.time()
    base = api.load("default")
    rows = [measure(base, "fp32", 32.0, storage_report(base.model, storage_dtype=torch.float32)
                    ["total_bytes"] / 1e6, 0.0, ("quick", "full"), True)]
    for bits, group, task in [(8, 128, False), (4, 128, True), (3, 128, True), (2, 128, False),
                              (4, 64, False), (3, 64, False)]:
        r = api.compress(base, "rtn", bits=bits, group_size=group, copy_model=True)
        s = r.summary()
        rows.append(measure(r.loaded, f"rtn {bits}-bit g{group}", s["bits_per_weight"], s["size_mb"], r.seconds,
                            ("quick",), task))
    data = {"benchmark": "foundation", "model": "default (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)",
            "corpus": "wiki-en test", "command": "python " + " ".join(sys.argv), "machine": api.machine(),
            "wall_seconds": time.time() - start, "rows": rows,
            "notes": "size_mb: every stored tensor byte (linear codes, scales, zeros; embedding/norms fp16; "
                     "lm_head tied). bits_per_weight counts the compressed linear layers only."}
    api.write_json(args.out, data)
    print(markdown(rows))


if __name__ == "__main__":
    main()
