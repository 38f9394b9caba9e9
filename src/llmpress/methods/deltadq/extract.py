"""Delta extraction: what differs between a fine-tune and its base, tensor by tensor.

Every ``nn.Linear`` of the decoder (not the output head) becomes a ``linear`` delta
W_ft - W_base, the thing DeltaDQ compresses. Every other parameter (input embedding, an untied
lm_head, norm gains, biases) is ``shared`` when it is bit-identical to the base (nothing stored)
and ``dense`` otherwise (its delta stored as float16 and counted). A fine-tune that froze its
embedding therefore shares it, and a tied lm_head with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from llmpress.errors import ConfigError
from llmpress.models.layers import compressible_linears


@dataclass
class DeltaPlan:
    linear: dict[str, torch.Tensor] = field(default_factory=dict)   # module name -> delta [out, in] fp32
    dense: dict[str, torch.Tensor] = field(default_factory=dict)    # parameter name -> delta (any shape) fp32
    shared: list[str] = field(default_factory=list)                 # parameter names equal to the base

    def counts(self) -> dict:
        return {"linear_layers": len(self.linear), "linear_params": sum(d.numel() for d in self.linear.values()),
                "dense_tensors": len(self.dense), "dense_params": sum(d.numel() for d in self.dense.values()),
                "shared_tensors": len(self.shared)}


def _architecture(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return f"{type(model).__name__}/{getattr(cfg, 'model_type', '?')}"


@torch.no_grad()
def extract(base: nn.Module, finetuned: nn.Module) -> DeltaPlan:
    """Split finetuned - base into linear, dense and shared parts; refuse mismatched models."""
    if _architecture(base) != _architecture(finetuned):
        raise ConfigError(f"base is {_architecture(base)} but the fine-tune is {_architecture(finetuned)}: "
                          "a delta needs the fine-tune of this very base model")
    bp = dict(base.named_parameters())
    fp = dict(finetuned.named_parameters())
    if set(bp) != set(fp):
        diff = sorted(set(bp) ^ set(fp))
        raise ConfigError(f"base and fine-tune have different parameters ({diff[:4]}...): not the same architecture")
    for name in bp:
        if bp[name].shape != fp[name].shape:
            raise ConfigError(f"{name} has shape {tuple(bp[name].shape)} in the base but {tuple(fp[name].shape)} in "
                              "the fine-tune: not the same architecture (e.g. a resized vocabulary)")
    plan = DeltaPlan()
    linear_names = {n for n, _ in compressible_linears(finetuned)}
    for name in fp:
        module, _, attr = name.rpartition(".")
        d = fp[name].detach().to(torch.float32) - bp[name].detach().to(torch.float32)
        if not torch.isfinite(d).all():
            raise ConfigError(f"the delta of {name} has NaN or Inf; fix the models before compressing")
        if module in linear_names and attr == "weight":
            plan.linear[module] = d
        elif torch.equal(fp[name], bp[name]):
            plan.shared.append(name)
        else:
            plan.dense[name] = d
    return plan
