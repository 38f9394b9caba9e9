"""The ``llmpress`` command. It parses arguments, calls :mod:`llmpress.api`, prints a table."""

from __future__ import annotations

import argparse
import json
import sys

from llmpress import __version__
from llmpress.errors import LlmpressError
from llmpress.table import format_table


def _names(arg: str | None) -> list[str]:
    """A comma-separated CLI list, empty entries dropped."""
    return [t for t in (arg or "").split(",") if t]


def _compress(args) -> int:
    from llmpress import api

    settings = {"bits": args.bits}
    # Only the options this method has (argparse leaves the others None): each method keeps its defaults.
    optional = {"rtn": ("group_size",), "kmeans": ("group_size",), "gptq": ("group_size", "act_order"),
                "shiftadd": ("mode", "row_group", "terms", "avg_bits")}.get(args.method, ())
    settings.update({k: getattr(args, k) for k in optional if getattr(args, k) is not None})
    calib = {"calib_samples": args.calib_samples, "calib_seqlen": args.calib_seqlen, "calib_seed": args.seed}
    result = api.compress(args.model, method=args.method, out=args.out, overwrite=args.overwrite, **calib, **settings)
    summary = result.summary()
    if "allocation_rows" in result.extra:
        from llmpress.models.calibrated import print_allocation

        print(print_allocation(result.extra["allocation_rows"], result.config["choices"]))
    if "shift_rounding" in result.extra:
        from llmpress.models.calibrated import rounding_summary

        r = rounding_summary(result.extra["shift_rounding"])
        print(f"scales rounded to powers of two: relative weight error {r['bcq_rel_error']:.4f} with float "
              f"scales -> {r['shift_rel_error']:.4f} with shifts (mean over layers, on the weights each group was fit to)")
    columns = ["method", "bits", *optional, "bits_per_weight", "model_bits_per_weight", "size_mb", "fp16_mb", "seconds"]
    print(format_table([summary], [c for c in columns if c in summary]))
    print(f"saved to {result.path}" if result.path else "not saved (no --out)")
    if args.json:
        api.write_json(args.json, summary)
    return 0


def _eval(args) -> int:
    from llmpress import api

    model = args.target or args.model
    tasks, generate = _names(args.tasks), _names(args.generate)
    if not (tasks or generate) or args.windows is not None:
        args.ppl = True  # perplexity is the default measurement, and --windows asks for it
    result = api.evaluate(model, ppl=args.ppl, profile=args.profile, seqlen=args.seqlen, corpus=args.corpus,
                          split=args.split, tasks=tasks, limit=args.limit, batch_size=args.batch_size,
                          windows=args.windows, generate=generate, max_new_tokens=args.max_new_tokens)
    rows = []
    if "perplexity" in result:
        p = result["perplexity"]
        rows.append({"measure": f"ppl {p['corpus']}/{p['split']}", "value": p["ppl"],
                     "detail": f"seqlen {p['seqlen']}, {p['windows']}/{p['total_windows']} windows, "
                               f"{p['tokens']} tokens"})
    for task, r in result.get("tasks", {}).items():
        rows.append({"measure": f"{task} acc", "value": r["acc"], "detail": f"{r['examples']} examples"})
        rows.append({"measure": f"{task} acc_norm", "value": r["acc_norm"], "detail": f"{r['examples']} examples"})
    for task, r in result.get("generation", {}).items():
        rows.append({"measure": f"{task} exact match", "value": r["exact_match"],
                     "detail": f"{r['examples']} examples, greedy"})
    print(f"model: {model}")
    print(format_table(rows))
    if args.json:
        api.write_json(args.json, result)
    return 0


def _info(args) -> int:
    from llmpress import api

    r = api.info(args.path)
    print(f"{r['path']}: method {r['method']} {json.dumps(r['config'])}, from {r['source']}")
    print(f"compressed layers: {r['bits_per_weight']:.4f} bits/weight; whole model "
          f"{r['model_bits_per_weight']:.4f} bits/weight")
    print(f"tensors {r['tensor_file_bytes'] / 1e6:.2f} MB, directory {r['disk_bytes'] / 1e6:.2f} MB, fp16 "
          f"{r['fp16_bytes'] / 1e6:.2f} MB ({r['ratio_vs_fp16']:.2f}x smaller)")
    groups = [{"group": k, "params": v["params"], "MB": v["bytes"] / 1e6, "bits/weight": v["bits_per_weight"]}
              for k, v in r["groups"].items()]
    print(format_table(groups))
    if args.layers:
        print(format_table([{"layer": x["name"], "shape": "x".join(map(str, x["shape"])), "format": x["format"],
                             "bits": x["bits"], "bits/weight": x["bits_per_weight"], "bytes": x["bytes"]}
                            for x in r["layers"]]))
    if args.json:
        api.write_json(args.json, r)
    return 0


def _bench_demo(args) -> int:
    from llmpress import api

    rows = api.demo(profile=args.profile)
    print()
    print(format_table(rows))
    if args.json:
        api.write_json(args.json, {"rows": rows, "machine": api.machine(), "command": " ".join(sys.argv)})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmpress", description="Compress pretrained large language models.")
    p.add_argument("--version", action="version", version=f"llmpress {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress a model and save a checkpoint directory")
    c.add_argument("--model", default="default", help="'default', a model folder, a .gguf file or a HF id")
    c.add_argument("--method", default="rtn", help="compression method: rtn, kmeans, gptq or shiftadd")
    c.add_argument("--bits", type=int, default=4)
    c.add_argument("--group-size", type=int, help="rtn/gptq: input columns per scale (0 = whole row; default "
                   "128 for rtn, 64 for gptq); a size that does not divide the width leaves a shorter last group. "
                   "kmeans: output channels per lookup table (default 0 = one table per tensor)")
    c.add_argument("--act-order", action="store_true", default=None, help="gptq: quantize columns by decreasing "
                   "Hessian diagonal")
    c.add_argument("--mode", choices=["lat", "acc"], help="shiftadd: lat = scales per 8-column block "
                   "(LUT friendly), acc = scales per column (default acc)")
    c.add_argument("--row-group", type=int, help="shiftadd: output rows sharing a scale (must divide every "
                   "layer's rows; 0 = all rows; default 64)")
    c.add_argument("--terms", type=int, help="shiftadd: powers of two per scale (1 = PoT, 2+ = APoT; default 2)")
    c.add_argument("--avg-bits", type=float, help="shiftadd: mixed 2/3/4-bit layers chosen automatically under "
                   "this average of stored bits per weight")
    c.add_argument("--calib-samples", type=int, default=128, help="gptq/shiftadd: calibration windows "
                   "(wiki-en train split; the quick profile uses 32)")
    c.add_argument("--calib-seqlen", type=int, default=2048, help="gptq/shiftadd: tokens per calibration "
                   "window (quick profile: 512)")
    c.add_argument("--seed", type=int, default=0, help="seed of the calibration windows")
    c.add_argument("--out", help="output directory (written atomically)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    c.add_argument("--json", help="also write the summary to this JSON file")
    c.set_defaults(func=_compress)

    e = sub.add_parser("eval", help="perplexity and zero-shot multiple choice")
    e.add_argument("target", nargs="?", help="model spec or checkpoint directory (same as --model)")
    e.add_argument("--model", default="default")
    e.add_argument("--ppl", action="store_true", help="perplexity (the default when no --tasks)")
    e.add_argument("--profile", default="quick", help="windows to evaluate: demo (8), quick (32), full (all)")
    e.add_argument("--windows", type=int, help="evaluate exactly this many windows (overrides --profile)")
    e.add_argument("--seqlen", type=int, default=2048)
    e.add_argument("--corpus", default="wiki-en", help="wiki-en (offline) or wikitext2 (needs network)")
    e.add_argument("--split", default="test")
    e.add_argument("--tasks", help="comma-separated BIG-bench multiple-choice tasks, e.g. social_iqa,hyperbaton")
    e.add_argument("--generate", help="comma-separated BIG-bench tasks scored by greedy exact match, "
                   "e.g. arithmetic/2_digit_addition")
    e.add_argument("--max-new-tokens", type=int, default=16)
    e.add_argument("--limit", type=int, help="evaluate only the first N examples of each task")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--json", help="also write the results to this JSON file")
    e.set_defaults(func=_eval)

    i = sub.add_parser("info", help="describe a checkpoint directory")
    i.add_argument("path")
    i.add_argument("--no-layers", dest="layers", action="store_false", help="omit the per-layer table")
    i.add_argument("--json")
    i.set_defaults(func=_info)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    d = bsub.add_parser("demo", help="fp32 vs RTN 4/3-bit on the default model, one table")
    d.add_argument("--profile", default="demo")
    d.add_argument("--json")
    d.set_defaults(func=_bench_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LlmpressError, FileExistsError) as exc:
        print(f"llmpress: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
