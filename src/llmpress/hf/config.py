"""The ``quantization_config`` of an llmpress model, as transformers reads it from config.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers.utils.quantization_config import QuantizationConfigMixin

from llmpress.errors import CheckpointError
from llmpress.hf.spec import QUANT_METHOD, SPEC_VERSION


@dataclass
class LlmpressConfig(QuantizationConfigMixin):
    """Everything needed to rebuild the compressed modules before the state dict loads.

    - ``modules``: module name -> its ``meta()`` (``module`` class name, ``format`` and the
      format's shape parameters, e.g. {"module": "CompressedLinear", "format": "uniform",
      "shape": [out, in], "bits": 3, "group_size": 128, "bias": false}).
    - ``aliases``: buffer name -> the buffer it is the same tensor as (a palettized embedding's
      tied head); those are not stored and are re-pointed after loading.
    - ``method`` / ``method_config``: how the model was compressed (informational).
    - ``tensors``: every stored tensor's sha256 (:func:`llmpress.hf.spec.tensor_table`), checked
      against the files before the weights load; ``manifest_sha256``: the hash of this table
      itself (:mod:`llmpress.integrity.seal`). Both are written on save.
    """

    modules: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)
    method: str = "none"
    method_config: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)
    manifest_sha256: str | None = None
    spec_version: int = SPEC_VERSION
    quant_method: str = QUANT_METHOD

    def __post_init__(self):
        from llmpress import __version__
        from llmpress.nn import MODULES

        if self.quant_method != QUANT_METHOD:
            raise CheckpointError(f"quant_method is {self.quant_method!r}, not {QUANT_METHOD!r}")
        if self.spec_version != SPEC_VERSION:
            raise CheckpointError(
                f"this llmpress quantization_config has spec_version {self.spec_version}; llmpress {__version__} "
                f"reads version {SPEC_VERSION}: use the llmpress version that wrote it")
        if not isinstance(self.modules, dict) or not self.modules:
            raise CheckpointError("an llmpress quantization_config needs a non-empty 'modules' table; the config.json "
                                  "is corrupt, re-create the checkpoint")
        for name, meta in self.modules.items():
            if not isinstance(meta, dict) or not isinstance(meta.get("module"), str) or meta["module"] not in MODULES \
                    or "format" not in meta:
                got = meta.get("module") if isinstance(meta, dict) else meta
                raise CheckpointError(f"module {name} in quantization_config uses {got!r}, unknown to llmpress "
                                      f"{__version__} (known: {sorted(MODULES)}); upgrade llmpress")
        if not isinstance(self.aliases, dict) or not all(isinstance(v, str) for v in self.aliases.values()):
            raise CheckpointError("quantization_config 'aliases' must be a table of buffer name -> buffer name")
        if not isinstance(self.method, str) or not isinstance(self.method_config, dict):
            raise CheckpointError("quantization_config 'method' must be a name and 'method_config' a table; the "
                                  "config.json is corrupt, re-create the checkpoint")
        if not isinstance(self.tensors, dict) or not all(isinstance(v, dict) for v in self.tensors.values()):
            raise CheckpointError("quantization_config 'tensors' must be a table of tensor name -> sha256 entry")

    @classmethod
    def from_dict(cls, config_dict, return_unused_kwargs=False, **kwargs):
        """As read from config.json: its own hash is checked before anything else is believed
        (transformers serializes this config while it builds the model, before any weight hook)."""
        from llmpress.integrity import seal

        where = "quantization_config in config.json"
        if not isinstance(config_dict, dict):
            raise CheckpointError(f"{where} is {type(config_dict).__name__}, not a table; re-create the checkpoint")
        if config_dict.get("spec_version") == SPEC_VERSION:  # an older version gets its own message below
            seal.check(config_dict, where, "re-create the checkpoint")
        unknown = sorted(set(config_dict) - set(cls.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"{where} has keys {unknown[:5]} unknown to this llmpress; re-create the checkpoint "
                                  "or upgrade llmpress")
        return super().from_dict(config_dict, return_unused_kwargs, **kwargs)

    def to_dict(self) -> dict:
        return {"quant_method": self.quant_method, "spec_version": self.spec_version, "method": self.method,
                "method_config": dict(self.method_config), "modules": {k: dict(v) for k, v in self.modules.items()},
                "aliases": dict(self.aliases), "tensors": {k: dict(v) for k, v in self.tensors.items()},
                **({"manifest_sha256": self.manifest_sha256} if self.manifest_sha256 else {})}
