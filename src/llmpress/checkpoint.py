"""Save and load a compressed model directory.

Layout::

    DIR/llmpress.json       manifest: format version, method + config, source model, every module
                            that holds a compressed format, every tensor (dtype, shape), tied-weight
                            aliases, sha256 and size of every other file, library versions
    DIR/model.safetensors   all tensors (compressed formats and float tensors); never pickle
    DIR/config.json         the Hugging Face model config
    DIR/tokenizer*          the tokenizer, when there is one

Float tensors are stored as float16 when that is lossless (compressed models are rounded so it
is), otherwise in their own dtype, so a loaded model computes exactly what was saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmpress import __version__
from llmpress.cache import atomic_directory, sha256_file
from llmpress.errors import CheckpointError
from llmpress.hf.spec import QUANT_METHOD, is_llmpress_config, quantization_config
from llmpress.models.layers import set_module
from llmpress.models.storage import storage_report
from llmpress.nn import MODULES, CompressedEmbedding

MANIFEST = "llmpress.json"
TENSORS = "model.safetensors"
FORMAT_NAME = "llmpress-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
           "int64": torch.int64, "bool": torch.bool}


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: object | None
    manifest: dict
    path: Path


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _library_versions() -> dict:
    import safetensors
    import transformers

    return {"llmpress": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__}


def _storable(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tied duplicates (recorded as aliases) and narrow floats to float16 where lossless."""
    tensors, aliases, owner = {}, {}, {}
    for name, t in state.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and key in owner:
            aliases[name] = owner[key]
            continue
        owner[key] = name
        t = t.detach().cpu()
        if t.is_floating_point() and t.dtype != torch.float16:
            half = t.to(torch.float16)
            if torch.equal(half.to(t.dtype), t):
                t = half
        tensors[name] = t.contiguous()
    return tensors, aliases


def _write_hf_config(path: Path, model: nn.Module, method: str, config: dict | None) -> None:
    """Make config.json describe the model as saved: its compute dtype (transformers' default
    ``dtype="auto"`` would otherwise pick the float16 of the narrowed tensors) and its compressed
    modules, so transformers' ``from_pretrained`` (after ``import llmpress``) rebuilds them and
    the directory is also a transformers checkpoint."""
    data = json.loads(path.read_text())
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None:
        data["dtype"] = _dtype_name(dtype)
    q = quantization_config(model, method, config)
    if q is not None:
        data["quantization_config"] = q
    elif (data.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD:
        del data["quantization_config"]  # stale: nothing is compressed any more
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save(model: nn.Module, path: str | Path, *, tokenizer=None, method: str = "none", config: dict | None = None,
         source: str | None = None, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` (with any compressed modules) to the directory ``path``, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    modules = {name: m.meta() for name, m in model.named_modules() if type(m).__name__ in MODULES}
    tensors, aliases = _storable(model.state_dict())
    report = storage_report(model)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "producer": "llmpress"})
        model.config.save_pretrained(tmp)
        _write_hf_config(tmp / "config.json", model, method, config)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        files = {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                 for f in sorted(tmp.iterdir()) if f.is_file()}
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "method": method,
            "config": config or {},
            "source": source,
            "architecture": type(model).__name__,
            "modules": modules,
            "tensors": {n: {"dtype": _dtype_name(t.dtype), "shape": list(t.shape)} for n, t in tensors.items()},
            "aliases": aliases,
            "files": files,
            "storage": {k: v for k, v in report.items() if k != "layers"},
            "layers": report["layers"],
            "versions": _library_versions(),
            **({"extra": extra} if extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return path


def load_manifest(path: Path, name: str, format_name: str, format_version: int, kind: str, make: str) -> dict:
    """The JSON manifest ``path/name`` of an llmpress directory of ``kind`` ("checkpoint", "delta"),
    checked for its format and version; every failure is a CheckpointError saying what to do.
    ``make``: the command that creates such a directory, for the error of a missing manifest."""
    mf = path / name
    if not mf.is_file():
        raise CheckpointError(f"{path} has no {name}: not an llmpress {kind} ({make})")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mf} is not valid JSON ({exc}); the {kind} is corrupt, re-create it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CheckpointError(f"{mf} is not an llmpress {'' if kind == 'checkpoint' else kind + ' '}manifest "
                              f"(format={found!r})")
    version = manifest.get("format_version")
    if version != format_version:
        raise CheckpointError(
            f"{mf} has {kind} format version {version}, this llmpress ({__version__}) reads version "
            f"{format_version}; use the llmpress version that wrote it (manifest versions: {manifest.get('versions')})"
        )
    return manifest


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; an llmpress checkpoint is a directory with {MANIFEST}")
    manifest = load_manifest(path, MANIFEST, FORMAT_NAME, FORMAT_VERSION, "checkpoint",
                             "save one with `llmpress compress`")
    mf = path / MANIFEST
    for key in ("files", "tensors", "modules", "aliases"):
        if not isinstance(manifest.get(key), dict):
            raise CheckpointError(f"{mf} lacks its '{key}' table; the checkpoint is corrupt, re-create it")
    return manifest


def verify(path: str | Path, manifest: dict | None = None) -> dict:
    """Check every file the manifest lists: present, same size, same sha256."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    for name, info in manifest["files"].items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing; the checkpoint is incomplete, re-create it")
        size = f.stat().st_size
        if size != info["bytes"]:
            what = "truncated" if size < info["bytes"] else "larger than written"
            raise CheckpointError(f"{f} is {what}: {size} bytes, the manifest says {info['bytes']}; re-create the checkpoint")
        if sha256_file(f) != info["sha256"]:
            raise CheckpointError(f"{f} was modified after saving (sha256 mismatch); re-create the checkpoint")
    if TENSORS not in manifest["files"]:
        raise CheckpointError(f"{path / MANIFEST} does not list {TENSORS}; the checkpoint is corrupt")
    return manifest


def is_transformers_checkpoint(path: str | Path) -> bool:
    """A directory written by transformers' ``save_pretrained`` of an llmpress model (no manifest)."""
    f = Path(path) / "config.json"
    if not f.is_file() or (Path(path) / MANIFEST).is_file():
        return False
    try:
        q = json.loads(f.read_text()).get("quantization_config") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    return isinstance(q, dict) and q.get("quant_method") == QUANT_METHOD


def _load_transformers(path: Path, dtype: torch.dtype) -> Checkpoint:
    """Through transformers' ``from_pretrained`` (the llmpress quantizer rebuilds the modules).
    Such a directory has no manifest, so there are no hashes to verify."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpress.hf import register

    register()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    q = model.config.quantization_config.to_dict()
    has_tokenizer = any(path.glob("tokenizer*"))
    tokenizer = AutoTokenizer.from_pretrained(path) if has_tokenizer else None
    manifest = {"format": "transformers", "method": q["method"], "config": q["method_config"],
                "modules": q["modules"], "aliases": q["aliases"], "verified": False}
    return Checkpoint(model, tokenizer, manifest, path)


def load(path: str | Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    """Rebuild the model (compressed modules included) and its tokenizer from ``path``: an
    llmpress checkpoint (manifest verified first) or a transformers ``save_pretrained`` directory
    of an llmpress model (``quantization_config.quant_method == "llmpress"``)."""
    from accelerate import init_empty_weights
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if is_transformers_checkpoint(path):
        return _load_transformers(path, dtype)
    manifest = verify(path)
    try:
        tensors = load_file(str(path / TENSORS))
    except SafetensorError as exc:
        raise CheckpointError(f"{path / TENSORS} is not a readable safetensors file: {exc}") from None
    expected = manifest["tensors"]
    if set(tensors) != set(expected):
        raise CheckpointError(f"{path / TENSORS} holds tensors {sorted(set(tensors) ^ set(expected))[:5]} that "
                              "disagree with the manifest; the checkpoint is corrupt")
    for name, t in tensors.items():
        if _dtype_name(t.dtype) != expected[name]["dtype"] or list(t.shape) != expected[name]["shape"]:
            raise CheckpointError(f"tensor {name} in {path / TENSORS} has dtype/shape {t.dtype}/{list(t.shape)}, "
                                  f"the manifest says {expected[name]}; the checkpoint is corrupt")

    config = AutoConfig.from_pretrained(path)
    if is_llmpress_config(config):
        del config.quantization_config  # rebuilt from the manifest below, not by a transformers quantizer
    # Parameters start on the meta device (no random init, no memory) and take the stored
    # tensors; buffers such as rotary tables are real, since checkpoints do not hold them.
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    for name, meta in manifest["modules"].items():
        cls = MODULES.get(meta.get("module"))
        if cls is None:
            raise CheckpointError(f"module {name} uses {meta.get('module')!r}, unknown to llmpress {__version__}; "
                                  "upgrade llmpress")
        set_module(model, name, cls.from_meta(meta))
    for alias, owner in manifest["aliases"].items():
        if owner not in tensors:
            raise CheckpointError(f"alias {alias} -> {owner} names no stored tensor; the checkpoint is corrupt")
    wanted = model.state_dict()
    tensors = {k: v.to(wanted[k].dtype) if k in wanted else v for k, v in tensors.items()}
    result = model.load_state_dict(tensors, strict=False, assign=True)
    missing = set(result.missing_keys) - set(manifest["aliases"])
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{path} does not fit its {config.model_type} config: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(result.unexpected_keys)[:5]}")
    if not any(isinstance(m, CompressedEmbedding) for m in model.modules()):
        model.tie_weights()  # a compressed embedding has no weight to tie: its head shares buffers instead
    for alias, owner in manifest["aliases"].items():
        module_name, _, attr = alias.rpartition(".")
        module = model.get_submodule(module_name)
        # Shared in the saved model but not tied by the config, or a compressed module's buffer.
        if getattr(module, attr).is_meta or attr in module._buffers:
            module_owner, _, owner_attr = owner.rpartition(".")
            setattr(module, attr, getattr(model.get_submodule(module_owner), owner_attr))
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise CheckpointError(f"{path} leaves parameters {empty[:5]} unset; the checkpoint is corrupt")
    model.eval()
    has_tokenizer = any(n.startswith("tokenizer") for n in manifest["files"])
    tokenizer = AutoTokenizer.from_pretrained(path) if has_tokenizer else None
    return Checkpoint(model, tokenizer, manifest, path)
