"""Which device a model runs on: the ``--device`` option of every verb."""

from __future__ import annotations

import torch
from torch import nn

from llmpress.errors import ConfigError


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``None``/``"cpu"`` -> the CPU; ``"auto"`` -> the first GPU where torch sees one, else the
    CPU; ``"cuda"``/``"cuda:N"`` -> that GPU, refused in one line where there is none."""
    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "cpu"):
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type != "cuda":
        raise ConfigError(f"device {name!r} is not supported: use cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                          "use --device cpu (or auto)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def place(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    """``model`` moved to ``device`` (see :func:`resolve_device`); compressed buffers keep their dtypes."""
    return model.to(resolve_device(device))
