"""Save and load a compressed delta directory, which names its base model by content hash.

Layout::

    DIR/delta.json          manifest: format + version, method + config, the base (spec and
                            sha256 of its parameters), the fine-tune's spec, every linear delta's
                            format metadata (shape, mask parameters, seed, bits), the dense and
                            shared parameter names, per-layer report, exact byte accounting, and
                            size + sha256 of the tensor file
    DIR/delta.safetensors   every stored tensor: "<layer>.<tensor>" for compressed linear deltas,
                            "dense.<parameter>" for float16 dense deltas

Written atomically; a missing, truncated or edited file fails to load with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from llmpress import __version__
from llmpress.cache import atomic_directory
from llmpress.errors import CheckpointError
from llmpress.formats import FORMATS
from llmpress.integrity import files as integrity_files
from llmpress.integrity import jsonfile, seal
from llmpress.integrity import manifest as integrity_manifest
from llmpress.integrity.entries import rebuild
from llmpress.integrity.jsonfile import ANY_KEY, NUMBER, conform
from llmpress.integrity.safetensors_header import read_header
from llmpress.integrity.tables import compare, of_state
from llmpress.methods.deltadq.accounting import account

MANIFEST = "delta.json"
TENSORS = "delta.safetensors"
FORMAT_NAME = "llmpress-delta"
FORMAT_VERSION = 2  # 2: the manifest carries its own sha256 (llmpress.integrity.seal)
_MAKE = "make one with `llmpress delta compress`"
DENSE_PREFIX = "dense."


@dataclass
class Delta:
    """A compressed fine-tune: ``linear`` module name -> format, ``dense`` parameter name -> float16
    delta, ``shared`` parameter names taken from the base unchanged."""

    method: str
    config: dict
    base_hash: str
    linear: dict = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    base_spec: str | None = None
    finetuned_spec: str | None = None
    extra: dict = field(default_factory=dict)

    def accounting(self, files: dict[str, int] | None = None) -> dict:
        return account(self.linear, self.dense, files)


def model_hash(model: nn.Module) -> str:
    """sha256 over every parameter's name, shape and float32 bytes (tied parameters once), so a
    base is recognised by content whatever its file layout or storage dtype."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        t = p.detach().to(torch.float32).contiguous().cpu()
        h.update(f"{name}:{list(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save(delta: Delta, path: str | Path, overwrite: bool = False) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {}
    for name, fmt in delta.linear.items():
        for k, t in fmt.tensors().items():
            tensors[f"{name}.{k}"] = t.detach().cpu().contiguous()
    for name, t in delta.dense.items():
        tensors[DENSE_PREFIX + name] = t.detach().to(torch.float16).cpu().contiguous()
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "producer": "llmpress"})
        manifest = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "llmpress": __version__,
            "method": delta.method, "config": delta.config,
            "base": {"sha256_params": delta.base_hash, "spec": delta.base_spec},
            "finetuned": {"spec": delta.finetuned_spec},
            "linear": {name: fmt.meta() for name, fmt in delta.linear.items()},
            "dense": sorted(delta.dense), "shared": sorted(delta.shared),
            # Per-layer choices and errors, without the search's per-candidate table: every byte
            # here counts against the ratio, so only what a reader of the delta needs is kept.
            "layers": [{k: v for k, v in r.items() if k not in ("errors", "shape")} for r in delta.layers],
            "accounting": delta.accounting(),
            "files": integrity_files.describe(tmp, [TENSORS]),
            **({"extra": delta.extra} if delta.extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(seal.sealed(manifest), sort_keys=True, separators=(",", ":")))
    return path


def read_manifest(path: str | Path) -> dict:
    """The delta's manifest: format, version and self-hash checked, every table present with its type."""
    path = Path(path)
    manifest = integrity_manifest.load(path, MANIFEST, FORMAT_NAME, FORMAT_VERSION, "delta", _MAKE, unsealed=(1,))
    where = str(path / MANIFEST)
    integrity_manifest.tables(manifest, where, {
        "method": str, "config": dict, "base": dict, "finetuned": dict, "linear": dict, "dense": list,
        "shared": list, "layers": list, "accounting": dict, "files": dict})
    jsonfile.field(manifest["base"], "sha256_params", str, f"{where} base")
    jsonfile.field(manifest["base"], "spec", (str, type(None)), f"{where} base")
    jsonfile.field(manifest["finetuned"], "spec", (str, type(None)), f"{where} finetuned")
    conform(manifest["layers"], [{"name": str, "bytes": int, "fp16_bytes": int, "rel_error": NUMBER, ANY_KEY: object}],
            f"{where} layers")
    for key in ("dense", "shared"):
        if not all(isinstance(n, str) for n in manifest[key]):
            raise CheckpointError(f"{where} lists a non-name in '{key}'; the delta is corrupt, re-create it")
    return manifest


def directory_bytes(path: str | Path) -> dict[str, int]:
    """Bytes of every file of a saved delta directory."""
    return {f.name: f.stat().st_size for f in sorted(Path(path).iterdir()) if f.is_file()}


def load(path: str | Path) -> Delta:
    """The delta in ``path``, checked before any tensor is read: manifest seal, file size and
    sha256, the safetensors header, and every format entry against the tensors it needs."""
    from safetensors.torch import load_file

    path = Path(path)
    manifest = read_manifest(path)
    where = str(path / MANIFEST)
    integrity_files.verify(path, manifest["files"], where, f"re-create the delta ({_MAKE})")
    if TENSORS not in manifest["files"]:
        raise CheckpointError(f"{where} does not list {TENSORS}; the delta is corrupt, re-create it")
    found = read_header(path / TENSORS, "delta tensors").table()
    expected, linear = {}, {}
    for name, meta in manifest["linear"].items():
        entry = f"{where} linear {str(name)[:80]!r}"
        kind = meta.get("format") if isinstance(meta, dict) else None
        if not isinstance(kind, str) or kind not in FORMATS:
            raise CheckpointError(f"{entry} uses format {str(kind)[:40]!r}, unknown to llmpress {__version__}; upgrade "
                                  "llmpress or re-create the delta")
        linear[name] = fmt = rebuild(FORMATS[kind].from_meta, meta, entry, f"{kind} format")
        expected.update({f"{name}.{k}": v for k, v in of_state(fmt.tensors()).items()})
    for name in manifest["dense"]:  # shapes are the base model's, checked when the delta is applied
        shape = found.get(DENSE_PREFIX + name, (None, ()))[1]
        expected[DENSE_PREFIX + name] = ("float16", shape)
    compare(expected, found, f"{path / TENSORS} against its manifest")
    tensors = load_file(str(path / TENSORS))
    for name, fmt in linear.items():
        for k in fmt.tensors():
            setattr(fmt, k, tensors[f"{name}.{k}"])
    dense = {name: tensors[DENSE_PREFIX + name] for name in manifest["dense"]}
    return Delta(manifest["method"], manifest["config"], manifest["base"]["sha256_params"], linear, dense,
                 manifest["shared"], manifest["layers"], manifest["base"].get("spec"),
                 manifest["finetuned"].get("spec"), manifest.get("extra", {}))
