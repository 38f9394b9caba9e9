"""Resumable training state: trainable weights, AdamW moments, step and history.

Layout of a state directory (written atomically, replaced whole each time)::

    state.json             step, config, hook settings, evaluation history, parameter names
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
from llmpress.errors import CheckpointError, ConfigError

STATE = "state.json"
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
    meta = {"step": step, "config": config, "hooks": hooks, "history": history, "losses": losses,
            "params": [n for n, _ in named]}
    with atomic_directory(path, overwrite=True) as tmp:
        save_file(params, str(tmp / PARAMS))
        save_file(moments, str(tmp / OPTIMIZER))
        save_file({k: v.contiguous() for k, v in (method or {}).items()}, str(tmp / METHOD))
        (tmp / STATE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def load(path: Path, named: list[tuple[str, torch.nn.Parameter]], optimizer: torch.optim.Optimizer,
         config: dict, hooks: dict) -> SavedState:
    """Restore weights and optimizer moments in place; refuse a state from a different run."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / STATE).read_text())
        params = load_file(str(path / PARAMS))
        moments = load_file(str(path / OPTIMIZER))
        method = load_file(str(path / METHOD)) if (path / METHOD).is_file() else {}
    except Exception as exc:  # unreadable JSON or safetensors: say which directory
        raise CheckpointError(f"training state in {path} is unreadable ({exc}); delete it to start over") from None
    for what, saved, now in (("config", meta.get("config"), config), ("method settings", meta.get("hooks"), hooks)):
        now = json.loads(json.dumps(now))  # compare as stored: tuples become lists
        if saved != now:
            diff = sorted(k for k in set(saved or {}) | set(now) if (saved or {}).get(k) != now.get(k))
            raise ConfigError(f"{path} holds a run with a different {what} (differs in {diff}); resume with the "
                              f"same settings, or delete {path} (or pick another --out) to start a new run")
    names = [n for n, _ in named]
    if meta.get("params") != names or set(params) != set(names):
        raise CheckpointError(f"training state in {path} has other trainable parameters than this model; "
                              "it was written for another model or method: delete it to start over")
    with torch.no_grad():
        for i, (name, p) in enumerate(named):
            if params[name].shape != p.shape:
                raise CheckpointError(f"parameter {name} in {path} has shape {tuple(params[name].shape)}, "
                                      f"the model has {tuple(p.shape)}; delete the state to start over")
            p.copy_(params[name])
            st = {k: moments[f"{i}.{k}"].to(p.device) for k in _MOMENTS if f"{i}.{k}" in moments}
            if st:
                optimizer.state[p] = st
    return SavedState(int(meta["step"]), list(meta["history"]), list(meta["losses"]), method)
