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
from llmpress.cache import atomic_directory, sha256_file
from llmpress.checkpoint import load_manifest
from llmpress.errors import CheckpointError
from llmpress.formats import FORMATS
from llmpress.methods.deltadq.accounting import account

MANIFEST = "delta.json"
TENSORS = "delta.safetensors"
FORMAT_NAME = "llmpress-delta"
FORMAT_VERSION = 1
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
            tensors[f"{name}.{k}"] = t.contiguous()
    for name, t in delta.dense.items():
        tensors[DENSE_PREFIX + name] = t.to(torch.float16).contiguous()
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "producer": "llmpress"})
        f = tmp / TENSORS
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
            "files": {TENSORS: {"bytes": f.stat().st_size, "sha256": sha256_file(f)}},
            **({"extra": delta.extra} if delta.extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")))
    return path


def read_manifest(path: str | Path) -> dict:
    return load_manifest(Path(path), MANIFEST, FORMAT_NAME, FORMAT_VERSION, "delta",
                         "make one with `llmpress delta compress`")


def directory_bytes(path: str | Path) -> dict[str, int]:
    """Bytes of every file of a saved delta directory."""
    return {f.name: f.stat().st_size for f in sorted(Path(path).iterdir()) if f.is_file()}


def load(path: str | Path) -> Delta:
    from safetensors.torch import load_file

    path = Path(path)
    manifest = read_manifest(path)
    info = manifest["files"][TENSORS]
    f = path / TENSORS
    if not f.is_file():
        raise CheckpointError(f"{f} is missing; the delta is incomplete, re-create it")
    if f.stat().st_size != info["bytes"] or sha256_file(f) != info["sha256"]:
        raise CheckpointError(f"{f} differs from what was written (size or sha256); the delta is corrupt, re-create it")
    tensors = load_file(str(f))
    linear = {}
    for name, meta in manifest["linear"].items():
        fmt = FORMATS[meta["format"]].from_meta(meta)
        for k, placeholder in fmt.tensors().items():
            t = tensors.get(f"{name}.{k}")
            if t is None or t.shape != placeholder.shape or t.dtype != placeholder.dtype:
                raise CheckpointError(f"{f} lacks or mis-sizes tensor {name}.{k}; the delta is corrupt")
            setattr(fmt, k, t)
        linear[name] = fmt
    dense = {name: tensors[DENSE_PREFIX + name] for name in manifest["dense"]}
    return Delta(manifest["method"], manifest["config"], manifest["base"]["sha256_params"], linear, dense,
                 manifest["shared"], manifest["layers"], manifest["base"].get("spec"),
                 manifest["finetuned"].get("spec"), manifest.get("extra", {}))
