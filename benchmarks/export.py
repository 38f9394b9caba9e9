"""Exports checked by the runtimes that read them (issue 21): GGUF files run by llama.cpp itself,
compressed-tensors folders loaded by transformers through compressed-tensors.

    python benchmarks/export.py              # writes benchmarks/results/export.json (~20 min on 2 cores)
    python benchmarks/export.py --render     # prints the BENCHMARKS.md table from that JSON

Per row, on the default model: compress with llmpress, ``llmpress export --to gguf``, then, side by
side, llmpress (its packed kernels) and llama.cpp (llama-cpp-python 0.3.36, built from its pinned
sdist into the benchmark-only venv of runtime.py; ``llamacpp_eval.py``) on the same inputs:
greedy continuation of ``--new-tokens`` tokens after runtime.py's prompt, and perplexity on the
first ``--windows`` windows of 2048 tokens of the wiki test split (DESIGN.md's quick profile: 32).
Reported: how many greedy tokens agree before the first difference, both perplexities and their
relative difference (target: within 1%), the GGUF's size and tensor types. The fp32 row exports the
uncompressed model (F32 tensors) and shows how closely the two runtimes agree with no quantization.
llama.cpp computes its dot products with its own activation quantization (q8 for Q4_0/Q8_0
weights), so equal weights need not give bit-equal logits.

The compressed-tensors rows (the symmetric checkpoints of the GGUF rows) export each checkpoint to
a pack-quantized folder, load it with ``AutoModelForCausalLM.from_pretrained`` (compressed-tensors
0.20.1 decompresses it), and compare every decoder linear's weight with llmpress's decoded weight,
the logits of one 2048-token wiki test window, and greedy tokens.

The Core ML rows (k-means 3-bit per row; DKM 3-bit per row with its 8-bit embedding table, 2
distilled steps of dkm_train.py's recipe - enough to make a DKM checkpoint, not to train one) export
to an .mlpackage, read its program back with coremltools, and compare every look-up-table op's
decoded weight with llmpress's and the package's size with the checkpoint's tensors. Prediction
needs macOS and is not run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import protocol  # noqa: E402
import runtime  # noqa: E402

from llmpress import api  # noqa: E402
from llmpress.cache import cache_dir  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "export.json"
QUICK_CALIBRATION = {"calib_samples": 32, "calib_seqlen": 512}
ROWS = {  # label: (method, settings, the GGUF types its linears must get)
    "fp32": (None, {}, {"F32"}),
    "rtn 8-bit g32 symmetric": ("rtn", {"bits": 8, "group_size": 32, "symmetric": True}, {"Q8_0"}),
    "rtn 4-bit g32 symmetric": ("rtn", {"bits": 4, "group_size": 32, "symmetric": True}, {"Q4_0"}),
    "gptq 4-bit g32 symmetric": ("gptq", {"bits": 4, "group_size": 32, "symmetric": True, **QUICK_CALIBRATION},
                                 {"Q4_0"}),
    # llama.cpp's own blocks; the default model's 576-wide layers get Q4_0 (Q5_0 for Q4_K), as in
    # llama.cpp's own quantization of the same model
    "rtn Q3_K": ("rtn", {"bits": 3, "grid": "Q3_K"}, {"Q3_K", "Q4_0"}),
    "gptq Q3_K": ("gptq", {"bits": 3, "grid": "Q3_K", **QUICK_CALIBRATION}, {"Q3_K", "Q4_0"}),
    "gptq Q4_K": ("gptq", {"bits": 4, "grid": "Q4_K", **QUICK_CALIBRATION}, {"Q4_K", "Q5_0"}),
    "gptq Q2_K": ("gptq", {"bits": 2, "grid": "Q2_K", **QUICK_CALIBRATION}, {"Q2_K", "Q4_0"}),
}
# llama.cpp's own quantizer on the fp32 row's GGUF: label -> llama_ftype (the "_S" mixes: one type
# throughout, with llama.cpp's fallbacks for narrow tensors and its choice for the embedding).
LLAMA_CPP_QUANTIZED = {"llama.cpp Q3_K_S": 11, "llama.cpp Q4_K_S": 14, "llama.cpp Q2_K": 10}


def llmpress_side(loaded, prompt: list[int], new_tokens: int, windows: int) -> dict:
    from llmpress.data import corpus_text
    from llmpress.data.wiki import tokenize
    from llmpress.eval import perplexity

    model = loaded.model
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False,
                             min_new_tokens=new_tokens, output_scores=True, return_dict_in_generate=True)
    top2 = [s[0].float().topk(2).values for s in out.scores]
    ids = tokenize(corpus_text("wiki", "test"), loaded.tokenizer)
    ppl = perplexity(model, ids, seqlen=2048, max_windows=windows, progress=False)
    return {"tokens": out.sequences[0, len(prompt):].tolist(), "margins": [float(t[0] - t[1]) for t in top2],
            "perplexity": ppl, "windows": first_windows(ids, windows)}


def first_windows(ids: torch.Tensor, windows: int) -> torch.Tensor:
    """The windows llmpress's perplexity scores, [windows, 2048]: what llama.cpp is given too."""
    return ids[:windows * 2048].view(windows, -1)


def llama_cpp_side(gguf: Path, prompt: list[int], new_tokens: int, windows: torch.Tensor, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps({"prompt": prompt, "new_tokens": new_tokens, "threads": threads,
                                      "windows": windows.tolist()}))
        cmd = [str(runtime.llama_cpp_python()), str(Path(__file__).parent / "llamacpp_eval.py"), str(gguf), str(inputs)]
        start = time.perf_counter()
        r = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
    tokens = windows.numel() - windows.shape[0]
    r["perplexity"] = {"ppl": math.exp(sum(r["window_nll"]) / tokens), "tokens": tokens,
                       "windows": windows.shape[0], "seconds": time.perf_counter() - start}
    return r


def agreeing_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def run_row(label: str, new_tokens: int, windows: int, threads: int) -> dict:
    method, settings, expected = ROWS[label]
    work = cache_dir("bench-export")
    start = time.perf_counter()
    if method is None:
        loaded = api.load("default")
    else:
        ck = work / label.replace(" ", "_")
        loaded = api.compress("default", method, out=ck, overwrite=True, progress=False, **settings).loaded
        loaded = api.load(ck)  # as a user would: the checkpoint, read back
    compress_seconds = time.perf_counter() - start
    gguf = work / (label.replace(" ", "_") + ".gguf")
    start = time.perf_counter()
    exported = api.export(loaded, to="gguf", out=gguf, template=api.gguf_template("default"), overwrite=True)
    export_seconds = time.perf_counter() - start
    linear_types = {t for n, t in exported["tensors"].items() if _is_linear(n)}
    assert linear_types == expected, (label, linear_types)
    prompt = loaded.tokenizer(runtime.PROMPT, add_special_tokens=False)["input_ids"]
    ours = llmpress_side(loaded, prompt, new_tokens, windows)
    theirs = llama_cpp_side(gguf, prompt, new_tokens, ours.pop("windows"), threads)
    same = agreeing_prefix(ours["tokens"], theirs["tokens"])
    # how close llmpress's own choice was where the two first differ (logit of its top token minus the runner-up)
    margin = ours["margins"][same] if same < new_tokens else None
    rel = theirs["perplexity"]["ppl"] / ours["perplexity"]["ppl"] - 1
    print(f"{label:26s} {'+'.join(sorted(expected)):11s} greedy tokens equal {same}/{new_tokens}  ppl llmpress "
          f"{ours['perplexity']['ppl']:.3f} llama.cpp {theirs['perplexity']['ppl']:.3f} ({100 * rel:+.2f}%)", flush=True)
    return {"row": label, "method": method, "settings": settings, "gguf_type": "+".join(sorted(expected)),
            "gguf_tensor_types": linear_type_counts(exported["tensors"]), "gguf_bytes": exported["bytes"],
            "compress_seconds": compress_seconds, "export_seconds": export_seconds,
            "prompt": prompt, "new_tokens": new_tokens, "llmpress_tokens": ours["tokens"],
            "llama_cpp_tokens": theirs["tokens"], "greedy_tokens_equal": same, "margin_at_first_difference": margin,
            "median_margin": sorted(ours["margins"])[len(ours["margins"]) // 2],
            "llmpress_ppl": ours["perplexity"], "llama_cpp_ppl": theirs["perplexity"], "ppl_rel_diff": rel,
            "llama_cpp_python": theirs["llama_cpp_python"]}


def _is_linear(gguf_name: str) -> bool:
    return gguf_name.startswith("blk.") and "norm" not in gguf_name


def linear_type_counts(types: dict[str, str]) -> dict[str, int]:
    """GGUF type -> number of decoder linear tensors of that type (plus the embedding, by its name)."""
    out: dict[str, int] = {}
    for name, t in types.items():
        if _is_linear(name):
            out[t] = out.get(t, 0) + 1
    out["token_embd"] = types.get("token_embd.weight")
    return out


def llama_cpp_quantized_row(label: str, new_tokens: int, windows: int, threads: int) -> dict:
    """llama.cpp's own quantizer (no importance matrix) on the fp32 row's GGUF, run and scored by
    llama.cpp on the same windows: the reference for GPTQ on the same block types."""
    from gguf import GGUFReader

    work = cache_dir("bench-export")
    source = work / "fp32.gguf"
    if not source.exists():
        api.export(api.load("default"), to="gguf", out=source, template=api.gguf_template("default"), overwrite=True)
    out = work / (label.replace(" ", "_").replace(".", "") + ".gguf")
    cmd = [str(runtime.llama_cpp_python()), str(Path(__file__).parent / "llamacpp_quantize.py"), str(source), str(out),
           str(LLAMA_CPP_QUANTIZED[label]), str(threads)]
    made = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
    types = {t.name: t.tensor_type.name for t in GGUFReader(out).tensors}
    from llmpress.data import corpus_text
    from llmpress.data.wiki import tokenize

    tokenizer = api.load("default").tokenizer
    prompt = tokenizer(runtime.PROMPT, add_special_tokens=False)["input_ids"]
    ids = first_windows(tokenize(corpus_text("wiki", "test"), tokenizer), windows)
    theirs = llama_cpp_side(out, prompt, new_tokens, ids, threads)
    print(f"{label:26s} {linear_type_counts(types)} ppl llama.cpp {theirs['perplexity']['ppl']:.3f}", flush=True)
    return {"row": label, "ftype": LLAMA_CPP_QUANTIZED[label], "quantize_seconds": made["seconds"],
            "gguf_bytes": out.stat().st_size, "gguf_tensor_types": linear_type_counts(types),
            "llama_cpp_tokens": theirs["tokens"], "llama_cpp_ppl": theirs["perplexity"],
            "importance_matrix": None, "llama_cpp_python": made["llama_cpp_python"]}


def compressed_tensors_row(label: str, new_tokens: int) -> dict:
    """A row's checkpoint (built by its GGUF row) exported to compressed-tensors and loaded by
    transformers through compressed-tensors: weights and logits against llmpress's."""
    from transformers import AutoModelForCausalLM

    from llmpress.data import corpus_text
    from llmpress.data.wiki import tokenize
    from llmpress.nn import FormatModule

    work = cache_dir("bench-export")
    ck = work / label.replace(" ", "_")
    if not ck.exists():
        method, settings, _ = ROWS[label]
        api.compress("default", method, out=ck, overwrite=True, progress=False, **settings)
    loaded = api.load(ck)
    folder = work / (label.replace(" ", "_") + ".compressed-tensors")
    start = time.perf_counter()
    exported = api.export(loaded, to="compressed-tensors", out=folder, overwrite=True)
    export_seconds = time.perf_counter() - start
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    window = tokenize(corpus_text("wiki", "test"), loaded.tokenizer)[:2048].view(1, -1)
    prompt = loaded.tokenizer(runtime.PROMPT, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ours, theirs = loaded.model(input_ids=window).logits, hf(input_ids=window).logits
        gen = {name: m.generate(input_ids=torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False,
                                min_new_tokens=new_tokens)[0, len(prompt):].tolist()
               for name, m in (("llmpress", loaded.model), ("transformers", hf))}
    layers = {n: m.dequantize() for n, m in loaded.model.named_modules() if isinstance(m, FormatModule)}
    equal = sum(torch.equal(hf.get_submodule(n).weight.float(), w) for n, w in layers.items())
    diff = float((ours - theirs).abs().max())
    same = agreeing_prefix(gen["llmpress"], gen["transformers"])
    print(f"{label:26s} compressed-tensors: {equal}/{len(layers)} weights equal, logits max |diff| {diff:.2e}, "
          f"greedy tokens equal {same}/{new_tokens}", flush=True)
    import compressed_tensors

    return {"row": label, "folder_bytes": exported["bytes"], "schemes": exported["schemes"],
            "export_seconds": export_seconds, "weights_equal": equal, "layers": len(layers),
            "logits_max_abs_diff": diff, "logits_max_abs": float(ours.abs().max()), "logit_tokens": window.numel(),
            "greedy_tokens_equal": same, "new_tokens": new_tokens, "compressed_tensors": compressed_tensors.__version__}


COREML_ROWS = {  # label: how the checkpoint is made
    "kmeans 3-bit per-row": ("compress", {"method": "kmeans", "bits": 3, "group_size": 1}),
    "dkm 3-bit per-row, 8-bit embedding (2 steps)": ("finetune", {"method": "dkm", "steps": 2, "distill": 1.0}),
}


def coreml_row(label: str, seqlen: int) -> dict:
    """A palettized checkpoint to an .mlpackage; its program read back by coremltools: every LUT
    op's decoded weight against llmpress's, and the package's size against the checkpoint's."""
    import dkm_train

    from llmpress.export import coreml_package
    from llmpress.nn import FormatModule

    work = cache_dir("bench-export")
    ck = work / label.split(",")[0].replace(" ", "_")
    kind, settings = COREML_ROWS[label]
    start = time.perf_counter()
    if kind == "compress":
        api.compress("default", out=ck, overwrite=True, progress=False, **settings)
    else:
        api.finetune("default", out=ck, overwrite=True, progress=False, log=lambda *_: None,
                     **{**dkm_train.TRAIN, "save_interval": 0, **settings,
                        "compression": {**dkm_train.dkm(3), "sensitivity": "none"}})
    make_seconds = time.perf_counter() - start
    loaded = api.load(ck)
    package = work / (ck.name + ".mlpackage")
    start = time.perf_counter()
    r = api.export(loaded, to="coreml", out=package, overwrite=True, seqlen=seqlen)
    export_seconds = time.perf_counter() - start
    back = coreml_package.read_back(package)
    layers = {n: m for n, m in loaded.model.named_modules() if isinstance(m, FormatModule)}
    equal = sum(np.array_equal(back[coreml_package.op_name(n)]["weight"], m.dequantize().numpy())
                for n, m in layers.items() if coreml_package.op_name(n) in back)
    ck_bytes = sum(f.stat().st_size for f in ck.iterdir() if f.suffix == ".safetensors")
    print(f"{label:44s} Core ML: {len(back)} LUT ops for {len(layers)} palettized layers, {equal} equal; package "
          f"{r['bytes'] / 1e6:.1f} MB vs checkpoint tensors {ck_bytes / 1e6:.1f} MB", flush=True)
    return {"row": label, "settings": settings, "make_seconds": make_seconds, "export_seconds": export_seconds,
            "seqlen": seqlen, "lut_ops": len(back), "palettized_layers": len(layers), "weights_equal": equal,
            "package_bytes": r["bytes"], "checkpoint_tensor_bytes": ck_bytes,
            "size_ratio": r["bytes"] / ck_bytes, "prediction": "not run: Core ML predicts on macOS only"}


def _types(counts: dict) -> str:
    linears = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()) if t != "token_embd")
    return f"{linears}; embedding {counts.get('token_embd')}"


def markdown(data: dict) -> str:
    body = [[r["row"], r["gguf_type"], f"{r['gguf_bytes'] / 1e6:.0f}",
             f"{r['greedy_tokens_equal']}/{r['new_tokens']}", f"{r['llmpress_ppl']['ppl']:.3f}",
             f"{r['llama_cpp_ppl']['ppl']:.3f}", f"{100 * r['ppl_rel_diff']:+.2f}%"] for r in data["rows"]]
    text = protocol.table(["row", "GGUF linears", "file MB", "greedy tokens equal", "ppl llmpress",
                           "ppl llama.cpp", "difference"], body)
    own = data.get("llama_cpp_quantized", [])
    if own:
        ours = {r["row"]: r for r in data["rows"]}
        body = []
        for r in own:
            kind = r["row"].split()[-1].split("_S")[0]
            mine = ours.get(f"gptq {kind}")
            body.append([r["row"], _types(r["gguf_tensor_types"]), f"{r['gguf_bytes'] / 1e6:.0f}",
                         f"{r['llama_cpp_ppl']['ppl']:.3f}",
                         f"{mine['llama_cpp_ppl']['ppl']:.3f}" if mine else "-",
                         _types(mine["gguf_tensor_types"]) if mine else "-",
                         f"{mine['gguf_bytes'] / 1e6:.0f}" if mine else "-"])
        text += "\n\n" + protocol.table(["llama.cpp's own quantizer", "its tensors", "file MB",
                                          "ppl (llama.cpp)", "llmpress GPTQ, same grid: ppl (llama.cpp)",
                                          "its tensors", "file MB"], body)
    ct = data.get("compressed_tensors", [])
    if ct:
        body = [[r["row"], f"{r['folder_bytes'] / 1e6:.0f}", f"{r['weights_equal']}/{r['layers']}",
                 f"{r['logits_max_abs_diff']:.1e}", f"{r['greedy_tokens_equal']}/{r['new_tokens']}"] for r in ct]
        text += "\n\n" + protocol.table(["row (compressed-tensors, loaded by transformers)", "folder MB",
                                         "weights equal", "logits max abs diff", "greedy tokens equal"], body)
    cm = data.get("coreml", [])
    if cm:
        body = [[r["row"], f"{r['lut_ops']}/{r['palettized_layers']}", f"{r['weights_equal']}/{r['palettized_layers']}",
                 f"{r['package_bytes'] / 1e6:.1f}", f"{r['checkpoint_tensor_bytes'] / 1e6:.1f}",
                 f"{100 * (r['size_ratio'] - 1):+.1f}%"] for r in cm]
        text += "\n\n" + protocol.table(["row (Core ML .mlpackage, read back by coremltools)", "LUT ops",
                                         "decoded weights equal", "package MB", "llmpress tensors MB",
                                         "size difference"], body)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--quantized", default=",".join(LLAMA_CPP_QUANTIZED), help="llama.cpp-quantized rows to run")
    ap.add_argument("--sections", default="gguf,llama.cpp-quantized,compressed-tensors,coreml",
                    help="gguf (llama.cpp rows), llama.cpp-quantized (its own quantizer), compressed-tensors "
                    "(transformers rows), coreml; the others are kept from the JSON")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    torch.set_num_threads(args.threads)
    sections = args.sections.split(",")
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    def save() -> None:  # after every row: an hour's run that fails late keeps what it measured
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(data, indent=1) + "\n")

    if "gguf" in sections:
        labels = args.rows.split(",")
        data["runs"].append(protocol.run_record("greedy tokens and perplexity, llmpress vs llama.cpp", labels))
        for label in labels:
            kept = {r["row"]: r for r in data.get("rows", [])}
            kept[label] = run_row(label, args.new_tokens, args.windows, args.threads)
            data.update(rows=[kept[k] for k in ROWS if k in kept], windows=args.windows, threads=args.threads)
            save()
    if "llama.cpp-quantized" in sections:
        labels = [label for label in args.quantized.split(",") if label]
        data["runs"].append(protocol.run_record("llama.cpp's own quantizer, scored by llama.cpp", labels))
        for label in labels:
            kept = {r["row"]: r for r in data.get("llama_cpp_quantized", [])}
            kept[label] = llama_cpp_quantized_row(label, args.new_tokens, args.windows, args.threads)
            data["llama_cpp_quantized"] = [kept[k] for k in LLAMA_CPP_QUANTIZED if k in kept]
            save()
    if "compressed-tensors" in sections:
        labels = [label for label in args.rows.split(",") if ROWS[label][1].get("symmetric")]
        data["compressed_tensors"] = [compressed_tensors_row(label, args.new_tokens) for label in labels]
        data["runs"].append(protocol.run_record("weights, logits and greedy tokens, llmpress vs transformers "
                                                "reading the compressed-tensors export", labels))
    if "coreml" in sections:
        data["coreml"] = [coreml_row(label, 128) for label in COREML_ROWS]
        data["runs"].append(protocol.run_record("Core ML packages read back by coremltools", list(COREML_ROWS)))
    save()
    print(markdown(data))


if __name__ == "__main__":
    main()
