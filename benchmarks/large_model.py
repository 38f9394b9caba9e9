"""Post-training compression of a LLaMA-2-7B-shaped model on this machine, layer by layer from disk.

    python benchmarks/large_model.py                 # writes benchmarks/results/large_model.json
    python benchmarks/large_model.py --render        # prints the BENCHMARKS.md table from that JSON

No 7B weights can be downloaded here, so the model is LLaMA-2-7B's config (4096 hidden, 32
layers, 11008 MLP, 32000 vocabulary, untied head) with seeded random float16 weights, written
once into $LLMPRESS_CACHE/bench-large by this script, in shards of a few layers as
``save_pretrained`` would. Random weights say nothing about quality; what is measured is memory
and time, which depend on the shapes alone.

Each row runs in a fresh process (its peak resident memory, VmHWM, is then the row's own):
``llmpress.models.layer_by_layer.compress_layer_by_layer`` over the first ``--layers`` decoder
layers (all 32 for RTN, which then also saves the checkpoint), with calibration tokens drawn at
random from the vocabulary (GPTQ needs at least 11008 calibration tokens for down_proj's Hessian).
Per layer: seconds and resident memory after it. The full-model time of a method measured on a
few layers is extrapolated as (its mean seconds per layer) x 32 and labelled so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import protocol  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "large_model.json"
LLAMA2_7B = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
# For --smoke (tests/test_large_model_script.py): the same script on a model of a few MB.
SMOKE = {**LLAMA2_7B, "vocab_size": 512, "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 4}
LAYERS_PER_SHARD = 4
ROWS = {  # label: (method, settings, decoder layers to run (None: all), save the checkpoint)
    "rtn 3-bit g128": ("rtn", {"bits": 3, "group_size": 128}, None, True),
    "gptq 3-bit g128": ("gptq", {"bits": 3, "group_size": 128}, 2, False),
    "kmeans 3-bit per-row": ("kmeans", {"bits": 3}, 2, False),
}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_model(folder: Path, shape: dict) -> dict:
    """LLaMA-2-7B's config with seeded N(0, 0.02) float16 weights (norms 1), sharded, written once."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    done = folder / "model.safetensors.index.json"
    if done.is_file():
        return json.loads(done.read_text())["metadata"]
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(**shape)
    with torch.device("meta"):
        shapes = {n: tuple(p.shape) for n, p in LlamaForCausalLM(config).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    groups: dict[str, list[str]] = {}
    for name in shapes:
        if name.startswith("model.layers."):
            shard = int(name.split(".")[2]) // LAYERS_PER_SHARD + 1
        else:
            shard = 0
        groups.setdefault(f"model-{shard:05d}.safetensors", []).append(name)
    start, weight_map, total = time.perf_counter(), {}, 0
    for file, names in groups.items():
        tensors = {}
        for name in names:
            t = torch.ones(shapes[name]) if name.endswith("norm.weight") else \
                torch.empty(shapes[name]).normal_(0, 0.02, generator=g)
            tensors[name] = t.to(torch.float16)
            total += tensors[name].numel() * 2
            weight_map[name] = file
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
    config.save_pretrained(folder)
    meta = {"total_size": total, "write_seconds": round(time.perf_counter() - start, 1)}
    done.write_text(json.dumps({"metadata": meta, "weight_map": weight_map}))
    return meta


def run_row(label: str, folder: str, samples: int, seqlen: int, out: str) -> None:
    """One row, in this (fresh) process; prints its JSON."""
    from llmpress import checkpoint
    from llmpress.methods import get_method, needs_calibration
    from llmpress.models.layer_by_layer import compress_layer_by_layer
    from llmpress.models.storage import storage_report

    shape = json.loads((Path(folder) / "config.json").read_text())
    method, settings, layers, save = ROWS[label]
    layers = shape["num_hidden_layers"] if layers is None else min(layers, shape["num_hidden_layers"])
    config = get_method(method).config_cls(**settings)
    ids = None
    if needs_calibration(method, config):
        ids = torch.randint(0, shape["vocab_size"], (samples, seqlen), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    model, report = compress_layer_by_layer(folder, method, config, ids, layers=layers, progress=False)
    compress_seconds = time.perf_counter() - start
    row = {"row": label, "method": method, "settings": settings, "layers_run": layers,
           "layers": shape["num_hidden_layers"],
           "calibration": {"samples": samples, "seqlen": seqlen, "tokens": "random ids"} if ids is not None else None,
           "layer_seconds": [t.seconds for t in report.timings], "rss_mb_after_layer": [t.rss_mb for t in report.timings],
           "compress_seconds": compress_seconds, "peak_rss_mb_compress": peak_rss_mb()}
    if layers == shape["num_hidden_layers"]:
        row["stored"] = storage_report(model)["groups"]
    if save:
        start = time.perf_counter()
        path = checkpoint.save(model, out, method=method, config=config.to_dict(), source="llama-2-7b-shaped random",
                               overwrite=True)
        row["save_seconds"] = time.perf_counter() - start
        row["checkpoint_bytes"] = sum(p.stat().st_size for p in Path(path).iterdir())
    row["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(row))


def markdown(data: dict) -> str:
    body = []
    for r in data["rows"]:
        n = r["layers"]
        per = sum(r["layer_seconds"]) / len(r["layer_seconds"])
        full = f"{sum(r['layer_seconds']) / 60:.1f} min measured" if r["layers_run"] == n else \
            f"~{per * n / 3600:.1f} h extrapolated ({r['layers_run']} layers run)"
        calib = f"{r['calibration']['samples']} x {r['calibration']['seqlen']}" if r["calibration"] else "-"
        saved = f"{r['checkpoint_bytes'] / 1e9:.2f} GB" if "checkpoint_bytes" in r else "-"
        body.append([r["row"], calib, f"{r['layers_run']}/{n}", f"{per:.1f}", full,
                     f"{max(r['rss_mb_after_layer']) / 1024:.2f}", f"{r['peak_rss_mb'] / 1024:.2f}", saved])
    return protocol.table(["row", "calibration", "layers run", "s / layer", "whole model", "RSS after a layer GB",
                           "peak RSS GB", "checkpoint"], body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a model of a few MB, results to --json (for the tests)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(args.json.read_text())))
        return
    from llmpress.cache import cache_dir

    work = cache_dir("bench-large")
    folder = work / ("smoke-shaped" if args.smoke else "llama-2-7b-shaped")
    if args.row:
        run_row(args.row, args.folder, args.samples, args.seqlen, args.out)
        return
    shape = SMOKE if args.smoke else LLAMA2_7B
    written = write_model(folder, shape)
    print(f"model: {written['total_size'] / 1e9:.1f} GB float16 in {folder}", flush=True)
    data = json.loads(args.json.read_text()) if args.json.exists() else {"rows": [], "runs": []}
    kept = {r["row"]: r for r in data["rows"]}
    labels = args.rows.split(",")
    data["runs"].append(protocol.run_record("layer-by-layer compression of a LLaMA-2-7B-shaped model: time and "
                                            "resident memory", labels))
    data.update(model={"config": shape, "weights": "seeded N(0, 0.02) float16, norms 1", **written})
    for label in labels:
        cmd = [sys.executable, __file__, "--row", label, "--folder", str(folder), "--out", str(work / "checkpoint"),
               "--samples", str(args.samples), "--seqlen", str(args.seqlen)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        kept[label] = json.loads(out.strip().splitlines()[-1])
        r = kept[label]
        print(f"{label:22s} {len(r['layer_seconds'])} layers, {sum(r['layer_seconds']) / len(r['layer_seconds']):.1f} "
              f"s/layer, peak RSS {r['peak_rss_mb'] / 1024:.2f} GB", flush=True)
        data["rows"] = [kept[k] for k in ROWS if k in kept]
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(markdown(data))


if __name__ == "__main__":
    main()
