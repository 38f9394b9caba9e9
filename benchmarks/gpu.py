"""The GPU path, measured in one short run on a lent GPU (issue 24).

    python benchmarks/gpu.py --out benchmarks/results/gpu.json          # on the GPU machine, ~3 min
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke.json          # CPU, TRITON_INTERPRET=1, tiny shapes
    python benchmarks/gpu.py --render                                    # BENCHMARKS.md tables from the JSON

Sections, each written to the JSON as soon as it is done (a run cut short keeps what it measured):

1. ``kernels``: the Triton kernels (:mod:`llmpress.kernels.triton_packed`) on packed 3-bit
   weights - palette (one 8-entry float16 table per row, as k-means/DKM per row), uniform (RTN grid,
   group 64) and binary codes (ShiftAdd lat: 3 planes, scales per 64 rows x 8 columns) - at the
   default model's four linear shapes and LLaMA-7B's three, at 1 and 16 tokens, against torch's
   float16 product with the dense weight (cuBLAS) and against the bytes-moved bound: the packed
   bytes (plus activations) over the device-to-device copy bandwidth measured in the same run.
   Each kernel's result is checked against the float64 product with the dequantized weight first.
   Timing: CUDA events around ``--iters`` calls after warm-up, median of ``--rounds`` rounds.
2. ``dkm_step``: one DKM training step (3 bits, one table, 5 soft k-means iterations, the same
   warm start) of a 4096x4096 weight for naive, (a) marshal to pinned host memory, (b) unique
   values, and the table path, with ``torch.cuda.max_memory_allocated`` above the step's start,
   the host's peak RSS, bytes saved for backward and the bytes marshaled host <-> device. eDKM's
   (c) sharding needs two ranks, i.e. two GPUs: on one it is recorded as not run.
3. ``default_model``: distilled 3-bit DKM steps on the default model and its quick perplexity,
   where the model can be loaded on the GPU machine (``--model``); its weights (540 MB) are over
   what a device call can carry, so without a path there this section says so and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "gpu.json"
DEFAULT_SHAPES = {"q/o 576x576": (576, 576), "k/v 192x576": (192, 576), "gate/up 1536x576": (1536, 576),
                  "down 576x1536": (576, 1536)}
LLAMA7B_SHAPES = {"7B q/k/v/o 4096x4096": (4096, 4096), "7B gate/up 11008x4096": (11008, 4096),
                  "7B down 4096x11008": (4096, 11008)}
SMOKE_SHAPES = {"smoke 64x96": (64, 96), "smoke 40x64": (40, 64)}
KINDS = ("palette3", "uniform3-g64", "shiftadd3-lat")
DKM_METHODS = {"naive": {"memory": "naive"}, "(a) marshal": {"memory": "naive", "marshal": True},
               "(b) unique": {"memory": "unique"}, "table (ours)": {"memory": "table"},
               "(a)+(b)": {"memory": "unique", "marshal": True}}
DKM_STEP = {"n_bits": 3, "max_iter": 5, "epsilon": 0.0}


def packed_weight(kind: str, shape: tuple[int, int], device, seed: int = 0):
    """A random 3-bit weight of ``kind`` on ``device``, built as the methods store it."""
    import torch

    from llmpress.formats import bcq, palette, uniform

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    if kind == "palette3":
        lut = torch.randn(shape[0], 8, 1, generator=g) * 0.02
        fmt = palette.palettize(w, lut, group_size=1)
    elif kind == "uniform3-g64":
        fmt = uniform.quantize(w, 3, 64)
    else:
        rows, cols = shape
        spec = bcq.BCQSpec(shape, 3, 64 if rows % 64 == 0 else rows, 8, 1)
        codes = torch.rand(3, rows, cols, generator=g) < 0.5
        exps = torch.randint(-9, -5, (*spec.scale_shape, 1), generator=g)
        fmt = bcq.BCQTensor.from_codes(codes, exps, torch.zeros_like(exps, dtype=torch.bool), spec)
    return type(fmt)(fmt.spec, **{k: v.to(device) for k, v in fmt.tensors().items()})


def _timer(device):
    """A function timing ``fn`` ``iters`` times: CUDA events on a GPU, perf_counter on a CPU (ms per call)."""
    import torch

    def timed(fn, iters: int) -> float:
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            stop.record()
            torch.cuda.synchronize()
            return start.elapsed_time(stop) / iters
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) * 1e3 / iters
    return timed


def copy_bandwidth(device, nbytes: int) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    timed = _timer(device)
    for _ in range(3):
        dst.copy_(src)
    ms = min(timed(lambda: dst.copy_(src), 10) for _ in range(3))
    return 2 * nbytes / (ms / 1e3)


def kernel_rows(device, shapes: dict, tokens_list, iters: int, rounds: int, bandwidth: float) -> list[dict]:
    import torch

    from llmpress.kernels import triton_packed

    timed = _timer(device)
    rows = []
    for shape_name, shape in shapes.items():
        dense16 = torch.randn(*shape, device=device).mul_(0.02).half()
        for tokens in tokens_list:
            x = torch.randn(tokens, shape[1], device=device)
            x16 = x.half()
            fp16_ms = statistics.median(timed(lambda: x16 @ dense16.T, iters) for _ in range(rounds))
            fp16_bytes = dense16.numel() * 2 + x16.numel() * 2 + tokens * shape[0] * 2
            rows.append({"shape": shape_name, "rows": shape[0], "cols": shape[1], "tokens": tokens,
                         "kind": "torch fp16 (cuBLAS)", "ms": fp16_ms, "bytes": fp16_bytes,
                         "bound_ms": fp16_bytes / bandwidth * 1e3})
            for kind in KINDS:
                fmt = packed_weight(kind, shape, device)
                state: dict = {}
                y = triton_packed.matmul(x, fmt, state)
                ref = x.double() @ fmt.dequantize(torch.float64).T.to(device)
                rel = float((y.double() - ref).norm() / ref.norm())
                ms = statistics.median(timed(lambda: triton_packed.matmul(x, fmt, state), iters)
                                       for _ in range(rounds))
                moved = fmt.nbytes + sum(v.numel() * v.element_size() for v in state.values()
                                         if isinstance(v, torch.Tensor)) + x.numel() * 4 + y.numel() * 4
                rows.append({"shape": shape_name, "rows": shape[0], "cols": shape[1], "tokens": tokens, "kind": kind,
                             "ms": ms, "bytes": moved, "bound_ms": moved / bandwidth * 1e3, "rel_error": rel,
                             "speedup_vs_fp16": fp16_ms / ms})
                print(f"{shape_name:24s} T={tokens:<3d} {kind:16s} {ms * 1e3:9.1f} us  "
                      f"(fp16 {fp16_ms * 1e3:8.1f} us, bound {moved / bandwidth * 1e6:7.1f} us, rel {rel:.1e})",
                      flush=True)
    return rows


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def dkm_rows(device, shape: tuple[int, int]) -> list[dict]:
    import torch

    from llmpress.methods.dkm import DKMConfig, SavedStats, cluster

    rows = []
    for name, settings in DKM_METHODS.items():
        config = DKMConfig(**DKM_STEP, **settings)
        g = torch.Generator().manual_seed(0)
        weight = torch.nn.Parameter((torch.randn(*shape, generator=g) * 0.02).half().float().to(device))
        grad_out = torch.randn(*shape, generator=g).to(device)
        lo, hi = float(weight.detach().min()), float(weight.detach().max())
        c0 = torch.linspace(lo, hi, config.n_clusters, device=device).view(1, -1, 1)
        stats = SavedStats()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        start = time.perf_counter()
        out, _ = cluster(weight, config, centroids=c0, stats=stats, name=name)
        out.backward(grad_out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - before if device.type == "cuda" else None
        marshaled = stats.moved_bytes if config.marshal else 0
        rows.append({"method": name, "shape": list(shape), "seconds": seconds, "gpu_peak_bytes": peak,
                     "host_peak_rss_bytes": _rss_peak_bytes(), "saved": stats.to_dict(),
                     "host_device_bytes": 2 * marshaled,  # out to the host in forward, back in backward
                     "grad_norm": float(weight.grad.norm())})
        print(f"DKM step {name:14s} {seconds:7.2f} s  GPU peak "
              f"{(peak or 0) / 1e9:6.2f} GB  saved {stats.kept_bytes / 1e6:9.1f} MB  "
              f"host<->device {2 * marshaled / 1e6:9.1f} MB", flush=True)
        del out, weight, grad_out
    rows.append({"method": "(c) shard", "not_run": "eDKM sharding splits saved tensors across ranks: two GPUs "
                 "(or two processes with a collective backend on one) are needed; one GPU was lent"})
    return rows


def default_model_section(model: str | None, device, steps: int) -> dict:
    """dkm_train.py's recipe (distilled 3-bit DKM, per-row tables) for ``steps`` steps, then the quick perplexity."""
    if not model:
        return {"not_run": "the default model (540 MB as converted) and the data wheels are over what a device call "
                "can carry (64 MiB); pass --model PATH (and LLMPRESS_CACHE holding the data) where they are there"}
    import tempfile

    from llmpress import api

    sys.path.insert(0, str(Path(__file__).parent))
    import dkm_train

    out = Path(tempfile.mkdtemp()) / "dkm3"
    r = api.finetune(model, method="dkm", out=out, progress=False, device=str(device), log=lambda *_: None,
                     **{**dkm_train.TRAIN, "steps": steps, "save_interval": 0, "distill": 1.0,
                        "compression": dkm_train.dkm(3)})
    ppl = api.evaluate(str(out), profile="quick", device=str(device), progress=False)["perplexity"]
    return {"recipe": "benchmarks/dkm_train.py TRAIN, dkm(3), distill 1.0", "steps": r.steps, "losses": r.losses,
            "train_seconds": r.seconds, "perplexity": ppl}


def machine(device) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "host": platform.node(), "cpu": platform.processor() or platform.machine()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_bytes=p.total_memory, multiprocessors=p.multi_processor_count,
                    capability=f"{p.major}.{p.minor}")
    else:
        info["gpu"] = None
        info["interpreted"] = os.environ.get("TRITON_INTERPRET") == "1"
    return info


def run(args) -> dict:
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel is defined
    import torch

    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu.py: no CUDA GPU here; run it on the lent GPU machine, or --smoke to check it on a CPU")
    data = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "smoke": args.smoke,
            "machine": machine(device), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")

    save()
    bandwidth = copy_bandwidth(device, (1 << 20) if args.smoke else (1 << 30))
    data["copy_bandwidth_bytes_per_s"] = bandwidth
    print(f"device-to-device copy: {bandwidth / 1e9:.0f} GB/s (read + write)", flush=True)
    shapes = SMOKE_SHAPES if args.smoke else {**DEFAULT_SHAPES, **LLAMA7B_SHAPES}
    iters, rounds = (1, 1) if args.smoke else (args.iters, args.rounds)
    data["kernels"] = kernel_rows(device, shapes, (1, 16), iters, rounds, bandwidth)
    save()
    data["dkm_step"] = dkm_rows(device, (64, 64) if args.smoke else (4096, 4096))
    save()
    data["default_model"] = default_model_section(None if args.smoke else args.model, device, args.dkm_steps)
    data["seconds"] = time.perf_counter() - START
    save()
    return data


def render(data: dict) -> str:
    m = data["machine"]
    lines = [f"GPU: {m.get('gpu')} (torch {m['torch']}, triton {m['triton']}); copy bandwidth "
             f"{data['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s; `{data['command']}`", "",
             "| shape | tokens | kind | us | bound us | vs fp16 | rel. error |", "|---|---|---|---|---|---|---|"]
    for r in data["kernels"]:
        lines.append(f"| {r['shape']} | {r['tokens']} | {r['kind']} | {r['ms'] * 1e3:.1f} | {r['bound_ms'] * 1e3:.1f} | "
                     f"{r.get('speedup_vs_fp16', 1.0):.2f}x | {r.get('rel_error', 0.0):.1e} |")
    lines += ["", "| DKM step 4096x4096, 3 bits | s | GPU peak | saved for backward | host<->device |",
              "|---|---|---|---|---|"]
    for r in data["dkm_step"]:
        if "not_run" in r:
            lines.append(f"| {r['method']} | not run: {r['not_run']} | | | |")
        else:
            peak = "n/a (CPU)" if r["gpu_peak_bytes"] is None else f"{r['gpu_peak_bytes'] / 1e9:.2f} GB"
            lines.append(f"| {r['method']} | {r['seconds']:.2f} | {peak} | "
                         f"{r['saved']['kept_bytes'] / 1e6:.1f} MB | {r['host_device_bytes'] / 1e6:.1f} MB |")
    return "\n".join(lines)


START = time.perf_counter()

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runs from a bare checkout too
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU through Triton's interpreter")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--model", help="the default model's folder on the GPU machine, if it is there")
    p.add_argument("--dkm-steps", type=int, default=20)
    p.add_argument("--render", action="store_true")
    a = p.parse_args()
    if a.render:
        print(render(json.loads(Path(a.out).read_text())))
    else:
        run(a)
