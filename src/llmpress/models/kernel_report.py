"""Which kernel each compressed layer runs: per layer, and summarised as one line per kind."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from llmpress.nn import MODULES, FormatModule


def kernel_rows(model: nn.Module, device: str | torch.device = "cpu") -> list[dict]:
    """One row per compressed module: layer name, module, format, bits, and the kernel per regime."""
    return [_row(name, m, device) for name, m in model.named_modules() if isinstance(m, FormatModule)]


def manifest_kernel_rows(modules: dict[str, dict], device: str | torch.device = "cpu") -> list[dict]:
    """The same from a checkpoint manifest's module table, without reading the weights (placeholder
    buffers of the right shapes and dtypes decide it as the loaded ones would)."""
    return [_row(name, MODULES[meta["module"]].from_meta(meta), device) for name, meta in modules.items()
            if meta.get("module") in MODULES]


def _row(name: str, m: FormatModule, device) -> dict:
    meta = m.packed().meta()
    return {"layer": name, "module": type(m).__name__, "format": meta["format"], "bits": meta.get("bits"),
            "kernels": m.kernel_names(device)}


def kernel_summary(rows: list[dict]) -> list[dict]:
    """Rows grouped by (module, format, bits, kernels), with how many layers each covers."""
    key = lambda r: (r["module"], r["format"], r["bits"], tuple(sorted(r["kernels"].items())))  # noqa: E731
    counts = Counter(key(r) for r in rows)
    return [{"module": mod, "format": fmt, "bits": bits, "layers": n,
             "kernels": ", ".join(f"{regime}: {name}" for regime, name in kernels)}
            for (mod, fmt, bits, kernels), n in counts.items()]
