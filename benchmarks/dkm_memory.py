"""Memory and time of one DKM forward+backward on LLaMA-7B weight shapes, per eDKM technique.

    python benchmarks/dkm_memory.py            # writes benchmarks/results/dkm_memory.json
    python benchmarks/dkm_memory.py --render   # prints the BENCHMARKS.md tables from that JSON

One step = clustered weight W~ (3 bits, one table per tensor, 5 soft k-means iterations from
the same starting centroids) and the backward of <W~, G> for a random G, on an fp32 weight of
fp16-exact values (so every path computes the same numbers). Each (method, shape) runs in a
fresh process: peak memory is the process's peak resident set during the step above what it
held before (the kernel's high-water mark is reset first), bytes saved for backward come from
the saved-tensor hooks (methods/dkm/saved_tensors.py). Sharding runs 2 gloo ranks; its row is
per rank. Naive and marshal-only rows of the two MLP shapes are scaled from the measured
4096x4096 row by the weight count (their saved bytes are exactly linear in it) and say so.
A LLaMA-7B decoder layer = 4 x (4096x4096) + 2 x (11008x4096) + 1 x (4096x11008), summed.

A second, small measurement states what the fp32-master rule changes: a real layer of the
default model clustered exactly in fp32 (naive) vs through its float16 / bfloat16 view (table).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "dkm_memory.json"
SHAPES = {"4096x4096": (4096, 4096), "11008x4096": (11008, 4096), "4096x11008": (4096, 11008)}
LAYER = {"4096x4096": 4, "11008x4096": 2, "4096x11008": 1}   # q/k/v/o; gate/up; down
METHODS = {  # name: (DKMConfig settings, ranks)
    "naive": ({"memory": "naive"}, 1),
    "(a) marshal": ({"memory": "naive", "marshal": True}, 1),
    "(b) unique": ({"memory": "unique"}, 1),
    "(c) shard, 2 ranks": ({"memory": "naive", "shard": True}, 2),
    "(a)+(b)+(c), 2 ranks": ({"memory": "unique", "marshal": True, "shard": True}, 2),
    "table (ours)": ({"memory": "table"}, 1),
}
# Naive-based rows hold ~320 bytes per weight: measured on 4096x4096 only (5.4 GB), scaled to the
# MLP shapes (14.4 GB each, more than this machine can hold twice for two ranks).
HEAVY = ("naive", "(a) marshal", "(c) shard, 2 ranks")
STEP = {"n_bits": 3, "max_iter": 5, "epsilon": 0.0}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def one_step(method: str, shape: tuple[int, int], repeats: int) -> dict:
    """Run the step in this process; returns bytes, peak and seconds."""
    from llmpress.methods.dkm import DKMConfig, SavedStats, cluster

    settings, _ = METHODS[method]
    config = DKMConfig(**STEP, **settings)
    g = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter((torch.randn(*shape, generator=g) * 0.02).half().float())
    grad_out = torch.randn(*shape, generator=g)
    lo, hi = float(weight.detach().min()), float(weight.detach().max())
    c0 = torch.linspace(lo, hi, config.n_clusters).view(1, -1, 1)  # same warm start for every method
    seconds, stats = [], None
    for _ in range(repeats):
        weight.grad = None
        stats = SavedStats()
        before = _rss_kb("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        out, _ = cluster(weight, config, centroids=c0, stats=stats, name=method)
        out.backward(grad_out)
        seconds.append(time.perf_counter() - start)
        peak = _rss_kb("VmHWM") - before
        del out
    return {"saved": stats.to_dict(), "peak_bytes": peak * 1024, "seconds": min(seconds), "repeats": repeats,
            "grad_norm": float(weight.grad.norm())}


def _rank_main(rank: int, port: int, method: str, shape, repeats: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks share the machine's cores
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        queue.put((rank, one_step(method, shape, repeats)))
    finally:
        dist.destroy_process_group()


def child(method: str, shape_name: str, repeats: int) -> dict:
    shape = SHAPES[shape_name]
    if METHODS[method][1] == 1:
        return one_step(method, shape, repeats)
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, method, shape, repeats, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get() for _ in procs)
    for p in procs:
        p.join()
    r0, r1 = results[0], results[1]
    assert r0["grad_norm"] == r1["grad_norm"], "ranks disagree"
    return {**r0, "peak_bytes": max(r0["peak_bytes"], r1["peak_bytes"]), "seconds": max(r0["seconds"], r1["seconds"]),
            "ranks": 2, "per_rank": [r0, r1]}


def measure(method: str, shape_name: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--child", method, shape_name, str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row.update(method=method, shape=shape_name, measured=True)
    print(f"{method:24s} {shape_name:11s} saved {row['saved']['kept_bytes'] / 1e6:12.3f} MB  "
          f"peak {row['peak_bytes'] / 1e6:9.1f} MB  {row['seconds']:7.2f} s", flush=True)
    return row


def scaled(row: dict, shape_name: str) -> dict:
    """A heavy row carried to another shape by the weight count (its bytes are linear in it)."""
    f = (SHAPES[shape_name][0] * SHAPES[shape_name][1]) / (SHAPES[row["shape"]][0] * SHAPES[row["shape"]][1])
    saved = {k: (round(v * f) if k.endswith("bytes") else v) for k, v in row["saved"].items()}
    return {**row, "shape": shape_name, "measured": False, "scaled_from": row["shape"], "saved": saved,
            "peak_bytes": round(row["peak_bytes"] * f), "seconds": row["seconds"] * f}


def view_rule() -> dict:
    """What clustering an fp32 master through its 16-bit view changes, on a real layer, at two temperatures."""
    from llmpress import api
    from llmpress.methods.dkm import DKMConfig, cluster, initial_centroids

    lm = api.load("default")
    name = "model.layers.0.mlp.down_proj"
    w32 = lm.model.get_submodule(name).weight.detach().clone()
    grad_out = torch.randn(w32.shape, generator=torch.Generator().manual_seed(0))
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    result = {"layer": name, "shape": list(w32.shape), "distinct_fp32_values": int(w32.unique().numel()),
              "rows": []}
    for tau in (1e-3, 1e-2):
        base = DKMConfig(n_bits=3, max_iter=5, epsilon=0.0, tau=tau)
        c0 = initial_centroids(w32, replace(base, memory="naive"))

        def step(config):
            w = torch.nn.Parameter(w32.clone())
            out, c = cluster(w, config, centroids=c0, name=name)
            out.backward(grad_out)
            return out.detach(), c, w.grad

        exact = step(replace(base, memory="naive"))
        for view in ("float16", "bfloat16"):
            got = step(replace(base, memory="table", value_dtype=view))
            rounded = w32.to(getattr(torch, view))
            result["rows"].append({"tau": tau, "view": view, "weight_rounding_rel": rel(rounded.float(), w32),
                                   "distinct_16bit_values": int(rounded.unique().numel()),
                                   "output_rel": rel(got[0], exact[0]), "centroids_rel": rel(got[1], exact[1]),
                                   "grad_rel": rel(got[2], exact[2])})
    return result


def _size(b: float) -> str:
    return f"{b:,.0f} B" if b < 1e4 else f"{b / 1e6:,.1f} MB"


def _ratio(x: float) -> str:
    return f"{x:,.1f}x" if x < 1e5 else f"{x:.1e}x"


def markdown(data: dict) -> str:
    rows = data["rows"]
    by = {(r["method"], r["shape"]): r for r in rows}
    lines = ["| method | saved for backward, 4096x4096 | decoder layer saved | reduction vs naive | "
             "decoder layer peak | peak reduction | decoder layer step (s) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    layer = {}
    for m in METHODS:
        layer[m] = {"saved": sum(LAYER[s] * by[(m, s)]["saved"]["kept_bytes"] for s in SHAPES),
                    **{k: sum(LAYER[s] * by[(m, s)][k] for s in SHAPES) for k in ("peak_bytes", "seconds")}}
    n = layer["naive"]
    for m in METHODS:
        L = layer[m]
        note = "" if all(by[(m, s)]["measured"] for s in SHAPES) else " *"
        lines.append(f"| {m}{note} | {_size(by[(m, '4096x4096')]['saved']['kept_bytes'])} | {_size(L['saved'])} | "
                     f"{_ratio(n['saved'] / L['saved'])} | {_size(L['peak_bytes'])} | "
                     f"{_ratio(n['peak_bytes'] / L['peak_bytes'])} | {L['seconds']:.1f} | "
                     f"{n['seconds'] / L['seconds']:.1f}x |")
    lines += ["", "\\* MLP shapes scaled from the measured 4096x4096 row by the weight count.", "",
              "| method | shape | saved tensors | as saved | distinct | held by this rank | on marshal device | "
              "peak | step (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["saved"]
        tag = "" if r["measured"] else f" (scaled from {r['scaled_from']})"
        lines.append(f"| {r['method']} | {r['shape']}{tag} | {s['packed']} | {_size(s['packed_bytes'])} | "
                     f"{_size(s['distinct_bytes'])} | {_size(s['kept_bytes'])} | {_size(s['moved_bytes'])} | "
                     f"{_size(r['peak_bytes'])} | {r['seconds']:.2f} |")
    v = data.get("view_rule")
    if v:
        lines += ["", f"fp32 master through its 16-bit view ({v['layer']}, {v['shape'][0]}x{v['shape'][1]}, "
                  f"{v['distinct_fp32_values']:,} distinct fp32 values), relative difference to exact fp32 DKM:", "",
                  "| tau (x weight variance) | view | distinct values | weight rounding | clustered weight | "
                  "centroids | gradient |", "|---|---|---|---|---|---|---|"]
        for x in v["rows"]:
            lines.append(f"| {x['tau']:g} | {x['view']} | {x['distinct_16bit_values']:,} | "
                         f"{x['weight_rounding_rel']:.1e} | {x['output_rel']:.1e} | {x['centroids_rel']:.1e} | "
                         f"{x['grad_rel']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--render", action="store_true", help="print the tables of an existing JSON and exit")
    ap.add_argument("--resume", action="store_true", help="keep the measured rows of an existing JSON")
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SHAPE", "REPEATS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, shape, repeats = args.child
        print(json.dumps(child(method, shape, int(repeats))))
        return
    if args.render:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    from llmpress import api

    start = time.time()
    data = {"benchmark": "dkm_memory", "command": "python " + " ".join(sys.argv), "machine": api.machine(),
            "step": {**STEP, "group_size": 0, "cluster_dim": 1, "weights": "fp32 of fp16-exact values",
                     "centroids": "evenly spaced over the weight range (same for every method)"},
            "rows": [], "view_rule": None, "wall_seconds": None}
    done = {}
    if args.resume and Path(args.out).exists():
        done = {(r["method"], r["shape"]): r for r in json.loads(Path(args.out).read_text())["rows"] if r["measured"]}
    for shape in SHAPES:
        for method in METHODS:
            if method in HEAVY and shape != "4096x4096":
                continue
            row = done.get((method, shape)) or measure(method, shape, repeats=1 if method in HEAVY else 3)
            data["rows"].append(row)
            api.write_json(args.out, data)  # a killed run keeps what it measured (--resume)
    heavy = [r for r in data["rows"] if r["method"] in HEAVY]
    data["rows"] += [scaled(r, s) for r in heavy for s in SHAPES if s != "4096x4096"]
    data["view_rule"] = view_rule()
    data["wall_seconds"] = time.time() - start
    api.write_json(args.out, data)
    print(markdown(data))


if __name__ == "__main__":
    main()
