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
from llmpress.cache import atomic_directory
from llmpress.errors import CheckpointError
from llmpress.hf.spec import QUANT_METHOD, is_llmpress_config, quantization_config, storage_key
from llmpress.integrity import files as integrity_files
from llmpress.integrity import manifest as integrity_manifest
from llmpress.integrity import seal
from llmpress.integrity.entries import rebuild
from llmpress.integrity.jsonfile import ANY_KEY, NUMBER, conform, field, integer
from llmpress.integrity.jsonfile import read as read_json
from llmpress.integrity.safetensors_header import read_header
from llmpress.integrity.tables import FLOATS, compare, dtype_name, of_state
from llmpress.models.layers import replaceable, set_module
from llmpress.models.storage import storage_report
from llmpress.nn import MODULES, CompressedEmbedding

MANIFEST = "llmpress.json"
TENSORS = "model.safetensors"
FORMAT_NAME = "llmpress-checkpoint"
FORMAT_VERSION = 2  # 2: the manifest carries its own sha256 (llmpress.integrity.seal)
_MAKE = "save one with `llmpress compress`"
# What readers print from a manifest (llmpress info): checked so a forged table is refused, not
# a crash in the printer. Its figures are the writer's; the tensors themselves are checked apart.
_GROUP = {"params": int, "bytes": int, "bits_per_weight": NUMBER}
_REPORT = {
    "source": (str, None), "aliases": {ANY_KEY: str}, "versions": {ANY_KEY: str},
    "storage": {"bits_per_weight": NUMBER, "fp16_bytes": int, "groups": {"compressed": _GROUP, ANY_KEY: _GROUP}},
    "layers": [{"name": str, "shape": [int], "format": str, "bits": (int, None), "bits_per_weight": NUMBER,
                "bytes": int}],
    ANY_KEY: object,
}


@dataclass
class Checkpoint:
    model: nn.Module
    tokenizer: object | None
    manifest: dict
    path: Path


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _library_versions() -> dict:
    import safetensors
    import transformers

    return {"llmpress": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__}


def _storable(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tied duplicates (recorded as aliases) and narrow floats to float16 where lossless."""
    tensors, aliases, owner = {}, {}, {}
    for name, t in state.items():
        key = storage_key(t)
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


def _write_hf_config(path: Path, model: nn.Module, method: str, config: dict | None,
                     stored: dict[str, torch.Tensor]) -> None:
    """Make config.json describe the model as saved: its compute dtype (transformers' default
    ``dtype="auto"`` would otherwise pick the float16 of the narrowed tensors) and its compressed
    modules, so transformers' ``from_pretrained`` (after ``import llmpress``) rebuilds them and
    the directory is also a transformers checkpoint (with the hash of every ``stored`` tensor)."""
    data = json.loads(path.read_text())
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None:
        data["dtype"] = dtype_name(dtype)
    q = quantization_config(model, method, config, stored)
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
        _write_hf_config(tmp / "config.json", model, method, config, tensors)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        files = integrity_files.describe(tmp, sorted(f.name for f in tmp.iterdir() if f.is_file()))
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "method": method,
            "config": config or {},
            "source": source,
            "architecture": type(model).__name__,
            "modules": modules,
            "tensors": {n: {"dtype": dtype_name(t.dtype), "shape": list(t.shape)} for n, t in tensors.items()},
            "aliases": aliases,
            "files": files,
            "storage": {k: v for k, v in report.items() if k != "layers"},
            "layers": report["layers"],
            "versions": _library_versions(),
            **({"extra": extra} if extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(seal.sealed(manifest), indent=1, sort_keys=True))
    return path


def read_manifest(path: str | Path) -> dict:
    """The manifest of the checkpoint ``path``: format, version and self-hash checked, and every
    table it must have present with its type. Reads nothing else."""
    path = Path(path)
    manifest = integrity_manifest.load(path, MANIFEST, FORMAT_NAME, FORMAT_VERSION, "checkpoint", _MAKE, unsealed=(1,))
    integrity_manifest.tables(manifest, str(path / MANIFEST),
                              {"files": dict, "tensors": dict, "modules": dict, "aliases": dict, "method": str,
                               "config": dict})
    conform(manifest, _REPORT, str(path / MANIFEST))
    return manifest


def verify(path: str | Path, manifest: dict | None = None) -> dict:
    """Check every file the manifest lists: a plain name inside ``path``, present, same size, same sha256."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    integrity_files.verify(path, manifest["files"], str(path / MANIFEST), "re-create the checkpoint")
    if TENSORS not in manifest["files"]:
        raise CheckpointError(f"{path / MANIFEST} does not list {TENSORS}; the checkpoint is corrupt")
    return manifest


@dataclass
class _Plan:
    """A checkpoint checked down to its tensor table, with its model built on the meta device."""

    manifest: dict
    model: nn.Module


def validate(path: str | Path, dtype: torch.dtype = torch.float32) -> dict:
    """Every check :func:`load` makes before reading tensor data (manifest seal, file hashes, the
    safetensors header against the manifest, every module entry against the stored tensors and the
    model config); allocates nothing from the files. Returns the manifest."""
    return _plan(Path(path), dtype).manifest


def _plan(path: Path, dtype: torch.dtype) -> _Plan:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    manifest = verify(path)
    where = str(path / MANIFEST)
    header = read_header(path / TENSORS, "checkpoint tensors")
    described = {}
    for name, info in manifest["tensors"].items():
        dtype_name = field(info, "dtype", str, f"{where} tensor {name!r}")
        shape = field(info, "shape", list, f"{where} tensor {name!r}")
        described[name] = (dtype_name, tuple(integer(d, f"{where} shape of {name}") for d in shape))
    compare(described, header.table(), f"{path / TENSORS} against its manifest")
    try:
        config = AutoConfig.from_pretrained(path)
        if is_llmpress_config(config):
            del config.quantization_config  # rebuilt from the manifest below, not by a transformers quantizer
        # Parameters on the meta device (no memory); buffers such as rotary tables are real, since
        # checkpoints do not hold them.
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    except Exception as exc:  # transformers raises many types for a config it cannot use
        raise CheckpointError(f"{path / 'config.json'} does not describe a model transformers can build "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    for name, meta in manifest["modules"].items():
        entry_where = f"{where} module {name!r}"
        replaceable(model, name, meta, entry_where)
        set_module(model, name, rebuild(MODULES[meta["module"]].from_meta, meta, entry_where, meta["module"]))
    state = model.state_dict()
    aliases = manifest["aliases"]
    for alias, owner in aliases.items():
        if alias not in state or owner not in described or tuple(state[alias].shape) != described[owner][1]:
            raise CheckpointError(f"{where} aliases {str(alias)[:80]} -> {str(owner)[:80]}, which does not fit the "
                                  "model or names no stored tensor; the checkpoint is corrupt")
    expected = of_state({n: t for n, t in state.items() if n not in aliases})
    compare(expected, described, f"{path} (model config and module table against the stored tensors)",
            float_any=frozenset(n for n, (d, _) in expected.items() if d in FLOATS))
    return _Plan(manifest, model)


def is_transformers_checkpoint(path: str | Path) -> bool:
    """A directory written by transformers' ``save_pretrained`` of an llmpress model (no manifest)."""
    f = Path(path) / "config.json"
    if not f.is_file() or (Path(path) / MANIFEST).is_file():
        return False
    try:
        data = read_json(f, "model config", "re-create the checkpoint")
    except CheckpointError:
        return False
    q = (data.get("quantization_config") if isinstance(data, dict) else None) or {}
    return isinstance(q, dict) and q.get("quant_method") == QUANT_METHOD


def _load_transformers(path: Path, dtype: torch.dtype) -> Checkpoint:
    """Through transformers' ``from_pretrained``: the llmpress quantizer checks the hashes in
    ``quantization_config`` against every tensor, then rebuilds the modules."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpress.hf import register

    register()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    q = model.config.quantization_config.to_dict()
    has_tokenizer = any(path.glob("tokenizer*"))
    tokenizer = AutoTokenizer.from_pretrained(path) if has_tokenizer else None
    manifest = {"format": "transformers", "method": q["method"], "config": q["method_config"],
                "modules": q["modules"], "aliases": q["aliases"], "verified": "tensor sha256 in quantization_config"}
    return Checkpoint(model, tokenizer, manifest, path)


def load(path: str | Path, dtype: torch.dtype = torch.float32) -> Checkpoint:
    """Rebuild the model (compressed modules included) and its tokenizer from ``path``: an
    llmpress checkpoint (validated before any tensor is read, see :func:`validate`) or a
    transformers ``save_pretrained`` directory of an llmpress model
    (``quantization_config.quant_method == "llmpress"``, tensor hashes checked the same way)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    path = Path(path)
    if is_transformers_checkpoint(path):
        return _load_transformers(path, dtype)
    plan = _plan(path, dtype)
    manifest, model = plan.manifest, plan.model
    try:
        tensors = load_file(str(path / TENSORS))
    except SafetensorError as exc:
        raise CheckpointError(f"{path / TENSORS} is not a readable safetensors file: {exc}") from None
    wanted = model.state_dict()
    tensors = {k: v.to(wanted[k].dtype) for k, v in tensors.items()}
    result = model.load_state_dict(tensors, strict=False, assign=True)
    missing = set(result.missing_keys) - set(manifest["aliases"])
    if missing or result.unexpected_keys:  # ruled out by validate(); kept as a guard against a transformers change
        raise CheckpointError(f"{path} does not fit its config: missing {sorted(missing)[:5]}, "
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
