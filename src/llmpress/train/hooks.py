"""Where a compression method plugs into fine-tuning.

``prepare`` runs before the optimizer is built (and before a resumed state is loaded), so it may
wrap modules and add parameters (DKM's soft k-means layers); ``finalize`` runs after the last
step and may replace them (hard-assigned palettized modules). ``settings`` are stored with a
resumable state: resuming under different settings is refused. ``state`` names the tensors a
method keeps outside the trainable parameters (DKM's centroids); they are saved with a
resumable state and handed back to ``load_state`` on resume. ``before_step`` runs before every
optimizer step (resumed steps included), for settings that follow the run's progress (DKM's
annealed temperature).
"""

from __future__ import annotations

import torch
from torch import nn


class TrainHooks:
    """Plain full fine-tuning: every hook is the identity."""

    name = "full"

    def settings(self) -> dict:
        return {}

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def before_step(self, model: nn.Module, step: int, steps: int) -> None:
        """Called with the 0-based ``step`` about to run, of ``steps`` in the whole run."""

    def finalize(self, model: nn.Module) -> nn.Module:
        return model

    def state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        pass
