"""Hugging Face transformers integration: llmpress checkpoints through ``from_pretrained``.

``import llmpress`` calls :func:`install`, which registers the ``"llmpress"`` quantization
config and quantizer with transformers' own registry
(``transformers.quantizers.auto.register_quantization_config`` / ``register_quantizer``). The
registry module takes seconds to import, so registration waits until transformers imports it
(on the first ``from_pretrained``); if it is already imported, registration happens at once.
:func:`register` does it eagerly.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

from llmpress.hf.spec import QUANT_METHOD, is_llmpress_config, quantization_config

REGISTRY = "transformers.quantizers.auto"

__all__ = ["QUANT_METHOD", "attach", "install", "is_llmpress_config", "quantization_config", "register"]


def register() -> None:
    """Register quant_method "llmpress" with transformers (idempotent)."""
    from transformers.quantizers import auto

    from llmpress.hf.config import LlmpressConfig
    from llmpress.hf.quantizer import LlmpressHfQuantizer

    if QUANT_METHOD not in auto.AUTO_QUANTIZATION_CONFIG_MAPPING:
        auto.register_quantization_config(QUANT_METHOD)(LlmpressConfig)
    if QUANT_METHOD not in auto.AUTO_QUANTIZER_MAPPING:
        auto.register_quantizer(QUANT_METHOD)(LlmpressHfQuantizer)


def attach(model, method: str = "none", method_config: dict | None = None):
    """See :func:`llmpress.hf.quantizer.attach`."""
    register()
    from llmpress.hf.quantizer import attach as _attach

    return _attach(model, method, method_config)


class _RegisterAfterLoad(importlib.abc.Loader):
    """Runs the registry module's own loader, then :func:`register`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self.loader, name)


class _RegistryWatcher(importlib.abc.MetaPathFinder):
    """Notices the first import of transformers' quantizer registry; removes itself after."""

    def find_spec(self, name, path=None, target=None):
        if name != REGISTRY:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterLoad(spec.loader)
        return spec


def install() -> None:
    """Register now if transformers' registry is loaded, else as soon as it is."""
    if REGISTRY in sys.modules:
        register()
    elif not any(isinstance(f, _RegistryWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegistryWatcher())
