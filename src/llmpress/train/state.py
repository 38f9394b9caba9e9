"""Resumable training state: trainable weights, AdamW moments, step and history.

Layout of a state directory (written atomically, replaced whole each time)::

    state.json             step, config, hook settings, evaluation history, parameter names, size
                           and sha256 of the three tensor files, and its own sha256
    params.safetensors     every trainable parameter, by name
    optimizer.safetensors  AdamW's exp_avg / exp_avg_sq / step for each trainable parameter
    method.safetensors     tensors the compression method keeps besides parameters (DKM centroids)

No pickle: the optimizer state is flattened into named tensors. The learning rate is a function
of the step (:mod:`llmpress.train.schedule`), and the data order a function of (seed, step), so
nothing else is needed to continue a run exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from llmpress.cache import atomic_directory
from llmpress.errors import CheckpointError, RunMismatchError
from llmpress.integrity import files as integrity_files
from llmpress.integrity import manifest as integrity_manifest
from llmpress.integrity import seal
from llmpress.integrity.jsonfile import integer
from llmpress.integrity.safetensors_header import read_header
from llmpress.integrity.tables import compare, dtype_name, of_state

STATE = "state.json"
FORMAT_NAME = "llmpress-train-state"
FORMAT_VERSION = 1
_FIX = "delete it to start over"
PARAMS = "params.safetensors"
OPTIMIZER = "optimizer.safetensors"
METHOD = "method.safetensors"
_MOMENTS = ("exp_avg", "exp_avg_sq", "step")


@dataclass
class SavedState:
    step: int
    history: list[dict]
    losses: list[float]
    method: dict


def _moment_table(named: list[tuple[str, torch.nn.Parameter]]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The optimizer tensors a state may hold for ``named``: AdamW's moments and its step counter."""
    out = {}
    for i, (_, p) in enumerate(named):
        dtype = dtype_name(p.dtype)
        out[f"{i}.exp_avg"] = out[f"{i}.exp_avg_sq"] = (dtype, tuple(p.shape))
        out[f"{i}.step"] = ("float32", ())
    return out


def exists(path: Path | None) -> bool:
    return path is not None and (Path(path) / STATE).is_file()


def save(path: Path, step: int, named: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
         config: dict, hooks: dict, history: list[dict], losses: list[float],
         method: dict[str, torch.Tensor] | None = None) -> None:
    from safetensors.torch import save_file

    params = {name: p.detach().cpu().contiguous() for name, p in named}
    moments = {}
    for i, (_, p) in enumerate(named):
        st = optimizer.state.get(p, {})
        for key in _MOMENTS:
            if key in st:
                t = st[key]
                moments[f"{i}.{key}"] = (t if torch.is_tensor(t) else torch.tensor(float(t))).detach().cpu().contiguous()
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "step": step, "config": config,
            "hooks": hooks, "history": history, "losses": losses, "params": [n for n, _ in named]}
    with atomic_directory(path, overwrite=True) as tmp:
        save_file(params, str(tmp / PARAMS))
        save_file(moments, str(tmp / OPTIMIZER))
        save_file({k: v.detach().cpu().contiguous() for k, v in (method or {}).items()}, str(tmp / METHOD))
        meta["files"] = integrity_files.describe(tmp, [PARAMS, OPTIMIZER, METHOD])
        (tmp / STATE).write_text(json.dumps(seal.sealed(meta), indent=1, sort_keys=True))


def load(path: Path, named: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
         config: dict, hooks: dict) -> SavedState:
    """Restore weights and optimizer moments in place; refuse a state from a different run, and
    check every file (seal, sizes, sha256, headers against this model's parameters) before reading
    any tensor."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = integrity_manifest.load(path, STATE, FORMAT_NAME, FORMAT_VERSION, "training state", _FIX)
    where = str(path / STATE)
    integrity_manifest.tables(meta, where, {"step": int, "history": list, "losses": list, "params": list,
                                            "files": dict})
    for what, saved, now in (("config", meta.get("config"), config), ("method settings", meta.get("hooks"), hooks)):
        now = json.loads(json.dumps(now))  # compare as stored: tuples become lists
        if saved != now:
            saved = saved if isinstance(saved, dict) else {}
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise RunMismatchError(f"{path} holds a run with a different {what} (differs in {diff}); resume with "
                                   f"the same settings, or delete {path} (or pick another --out) to start a new run")
    names = [n for n, _ in named]
    if meta["params"] != names:
        raise CheckpointError(f"training state in {path} has other trainable parameters than this model; "
                              f"it was written for another model or method: {_FIX}")
    files = integrity_files.verify(path, meta["files"], where, _FIX)
    if set(files) != {PARAMS, OPTIMIZER, METHOD}:
        raise CheckpointError(f"{where} lists files {sorted(files)}, not {[PARAMS, OPTIMIZER, METHOD]}; {_FIX}")
    compare(of_state(dict(named)), read_header(files[PARAMS], "trainable parameters").table(),
            f"{files[PARAMS]} against this model's parameters")
    moments, allowed = read_header(files[OPTIMIZER], "optimizer moments").table(), _moment_table(named)
    unknown = sorted(set(moments) - set(allowed))
    if unknown:
        raise CheckpointError(f"{files[OPTIMIZER]} holds moments {unknown[:3]} for no parameter of this model; {_FIX}")
    compare({n: allowed[n] for n in moments}, moments, f"{files[OPTIMIZER]} against this model's parameters")
    read_header(files[METHOD], "method tensors")
    params = load_file(str(files[PARAMS]))
    moments = load_file(str(files[OPTIMIZER]))
    method = load_file(str(files[METHOD]))
    with torch.no_grad():
        for i, (name, p) in enumerate(named):
            p.copy_(params[name])
            st = {k: moments[f"{i}.{k}"].to(p.device) for k in _MOMENTS if f"{i}.{k}" in moments}
            if st:
                optimizer.state[p] = st
    return SavedState(integer(meta["step"], f"{where} step"), list(meta["history"]), list(meta["losses"]), method)
