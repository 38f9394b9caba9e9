"""ShiftAddLLM against RTN and GPTQ on the default model (issue 5).

    python benchmarks/shiftadd.py              # writes benchmarks/results/shiftadd.json, row by row
    python benchmarks/shiftadd.py --render     # prints the BENCHMARKS.md table from that JSON

Rows: RTN and GPTQ (group 64), ShiftAdd "lat" (scales per 8-column block and 32 rows) and "acc"
(scales per column and 192 rows), all at 3 and 2 bits, and ShiftAdd "lat" with automated 2/3/4-bit
allocation under 2.2 average stored bits. Scales are additive powers of two with 2 terms.
Calibration: the quick profile, 32 windows x 512 tokens of the wiki-en train split, seed 0.
Each row records bits/weight, compression seconds and quick-profile perplexity (32 windows of
2048 tokens of wiki-en test). The JSON is rewritten after every row; a rerun skips rows already
in it, so an interrupted run can be resumed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmpress import api

RESULTS = Path(__file__).parent / "results" / "shiftadd.json"
CALIB = {"calib_samples": 32, "calib_seqlen": 512, "calib_seed": 0}
LAT = {"mode": "lat", "row_group": 32, "terms": 2}
ACC = {"mode": "acc", "row_group": 192, "terms": 2}

# (label, method, settings), in the order they run.
ROWS = [
    ("rtn 3-bit g64", "rtn", {"bits": 3, "group_size": 64}),
    ("rtn 2-bit g64", "rtn", {"bits": 2, "group_size": 64}),
    ("gptq 3-bit g64", "gptq", {"bits": 3, "group_size": 64}),
    ("gptq 2-bit g64", "gptq", {"bits": 2, "group_size": 64}),
    ("shiftadd lat 3-bit", "shiftadd", {"bits": 3, **LAT}),
    ("shiftadd lat 2-bit", "shiftadd", {"bits": 2, **LAT}),
    ("shiftadd lat mixed 2.2", "shiftadd", {"bits": 2, "avg_bits": 2.2, **LAT}),
    ("shiftadd acc 3-bit", "shiftadd", {"bits": 3, **ACC}),
    ("shiftadd acc 2-bit", "shiftadd", {"bits": 2, **ACC}),
]


def markdown(rows: list[dict]) -> str:
    lines = ["| method | bits/weight (linear layers) | compress s | ppl quick |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['bits_per_weight']:.3f} | {r['compress_seconds']:.0f} | "
                     f"{r['ppl_quick']['ppl']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the table of an existing JSON and exit")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        print(markdown(json.loads(out.read_text())["rows"]))
        return
    data = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {r["method"] for r in data["rows"]}
    data.update({"benchmark": "shiftadd", "model": "default (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)",
                 "corpus": "wiki-en test", "calibration": {"corpus": "wiki-en train", **CALIB},
                 "command": "python " + " ".join(sys.argv), "machine": api.machine(),
                 "notes": "bits_per_weight counts every stored byte of the 210 compressed decoder linears "
                          "(codes/bit-planes, scales, zeros or exponents and signs). compress_seconds is "
                          "wall time of calibration + quantization on a 2-core machine shared with other jobs."})
    base = api.load("default")
    for label, method, settings in ROWS:
        if label in done:
            continue
        start = time.time()
        r = api.compress(base, method, copy_model=True, **CALIB, **settings)
        s = r.summary()
        ppl = api.evaluate(r.loaded, profile="quick")["perplexity"]
        row = {"method": label, "settings": r.config, "bits_per_weight": s["bits_per_weight"],
               "model_bits_per_weight": s["model_bits_per_weight"], "size_mb": s["size_mb"],
               "compress_seconds": r.seconds, "ppl_quick": ppl, "row_seconds": time.time() - start}
        if "allocation" in r.extra:
            row["allocation"] = r.extra["allocation"]
            row["allocation_rows"] = r.extra["allocation_rows"]
        print({k: v for k, v in row.items() if not k.startswith("allocation")}, flush=True)
        data["rows"].append(row)
        api.write_json(out, data)
        del r
    print(markdown(data["rows"]))


if __name__ == "__main__":
    main()
