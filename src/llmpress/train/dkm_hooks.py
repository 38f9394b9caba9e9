"""DKM in the fine-tuning loop: wrap before training, palettize after (eDKM's recipe)."""

from __future__ import annotations

import torch
from torch import nn

from llmpress.errors import ConfigError
from llmpress.methods.dkm import DKMModelConfig
from llmpress.models.dkm import finalize, prepare
from llmpress.nn.dkm import DKMEmbedding, DKMLinear
from llmpress.train import distributed
from llmpress.train.hooks import TrainHooks


class DKMHooks(TrainHooks):
    """Train-time weight clustering: every chosen module computes with its soft-clustered weight
    while training; at the end each weight becomes the index of its nearest centroid. The
    centroids (warm starts) travel with a resumable state, so a resumed run clusters from exactly
    where it stopped."""

    name = "dkm"

    def __init__(self, config: DKMModelConfig | dict | None = None, centroids: dict[str, torch.Tensor] | None = None,
                 init_from: str | None = None, importance: dict[str, torch.Tensor] | None = None,
                 calibration: dict | None = None, weights: dict[str, torch.Tensor] | None = None):
        """``centroids``: starting tables by module name (see :func:`llmpress.models.dkm.palette_tables`);
        ``weights``: starting weights of those linears (:func:`llmpress.models.dkm.palette_weights`),
        copied in by :meth:`prepare`, after a distillation teacher has been copied from the model
        as given; ``init_from`` names where both came from, recorded with the run's settings. ``importance``:
        per-linear input-column weights for ``sensitivity="hessian"`` (see
        :func:`llmpress.models.dkm.hessian_importance`); ``calibration`` says what data they came
        from, recorded with the run's settings (a resume must use the same)."""
        self.config = DKMModelConfig.from_dict(config) if isinstance(config, dict) else config or DKMModelConfig()
        self.centroids, self.init_from, self.weights = centroids, init_from, weights
        self.importance, self.calibration = importance, calibration

    def settings(self) -> dict:
        return {"dkm": self.config.to_dict(), **({"init_from": self.init_from} if self.init_from else {}),
                **({"init_weights": True} if self.weights else {}),
                **({"calibration": self.calibration} if self.calibration else {})}

    def prepare(self, model: nn.Module) -> nn.Module:
        if self.weights:
            load_weights(model, self.weights, self.init_from)
        prepare(model, self.config, progress=distributed.current().main, centroids=self.centroids,
                importance=self.importance)
        return model

    def before_step(self, model: nn.Module, step: int, steps: int) -> None:
        progress = step / (steps - 1) if steps > 1 else 1.0  # tau_final at the last step itself
        for m in model.modules():
            if isinstance(m, (DKMLinear, DKMEmbedding)):
                m.anneal(progress)

    def finalize(self, model: nn.Module) -> nn.Module:
        finalize(model)
        return model

    def state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {f"{name}.{b}": getattr(m, b).detach().cpu() for name, m in model.named_modules()
                if isinstance(m, (DKMLinear, DKMEmbedding)) for b in ("centroids", "tau", "steps")}

    def load_state(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for key, value in self.state(model).items():
                name, _, buffer = key.rpartition(".")
                getattr(model.get_submodule(name), buffer).copy_(tensors[key])


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str | None = None) -> None:
    """Copy ``weights`` (by linear name) into ``model``'s linears; names or shapes that do not match
    (a palette of another model) are refused before anything is copied."""
    modules = dict(model.named_modules())
    for name, w in weights.items():
        m = modules.get(name)
        if not isinstance(m, nn.Linear) or tuple(m.weight.shape) != tuple(w.shape):
            have = tuple(m.weight.shape) if isinstance(m, nn.Linear) else None
            raise ConfigError(f"{source or 'the starting palette'}: {name} {tuple(w.shape)} does not match the model "
                              f"({have or 'no such linear'}); start from a palette of the same model")
    with torch.no_grad():
        for name, w in weights.items():
            modules[name].weight.copy_(w)
