"""Model-level delta compression: extract, calibrate, compress, apply, and serve several deltas
over one shared base.

    delta = compress(base, finetuned, "deltadq", DeltaDQConfig(ratio=32), calibration_ids(tok))
    merged = apply(base, delta)                  # base weights + reconstructed delta, in place
    a, b = attach(base, delta_a), attach(base, delta_b)   # both share base's weight memory
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from llmpress.deltastore import Delta, model_hash
from llmpress.errors import CheckpointError, ConfigError
from llmpress.methods.deltadq import compress_layer, extract
from llmpress.models.calibration import layerwise, model_device
from llmpress.models.layers import set_module
from llmpress.nn.delta_linear import DeltaLinear


def calibration_ids(tokenizer, data: str = "arithmetic", n: int = 16, seqlen: int = 256, seed: int = 0) -> torch.Tensor:
    """[n, seqlen] calibration tokens: seeded windows of the wiki train split, or of the
    arithmetic training examples (prompt + answer, one per line) for a delta fine-tuned on them."""
    from llmpress.data.wiki import calibration_windows

    if data == "wiki":
        return calibration_windows(tokenizer, n=n, seqlen=seqlen, seed=seed)
    if data == "arithmetic":
        from llmpress.data.arithmetic import train_eval_split

        train, _ = train_eval_split()
        text = "\n\n".join(f"{ex.prompt} {ex.targets[0]}" for ex in train)
        return calibration_windows(tokenizer, n=n, seqlen=seqlen, seed=seed, text=text)
    raise ConfigError(f"unknown calibration data {data!r}; choose 'arithmetic' or 'wiki'")


@torch.no_grad()
def compress(base: nn.Module, finetuned: nn.Module, method: str, config, calib_ids: torch.Tensor | None = None,
             progress: bool = True) -> Delta:
    """Compress finetuned - base. With ``calib_ids`` [n, seqlen], the fine-tune's per-layer inputs
    weigh the output error (DeltaDQ's group-size search uses it; every method reports it)."""
    start = time.perf_counter()
    plan = extract(base, finetuned)
    linear, rows = {}, []

    def do(name: str, gram):
        fmt, row = compress_layer(name, plan.linear[name], method, config, gram)
        linear[name] = fmt
        rows.append(row)

    if calib_ids is not None:
        for step in layerwise(finetuned, calib_ids, progress=progress):
            names = [n for n, m in step.layer.named_modules() if f"{step.name}.{n}" in plan.linear]
            grams = step.gram(names)
            for n in names:
                do(f"{step.name}.{n}", grams[n].to(torch.float32))
    for name in tqdm([n for n in plan.linear if n not in linear], desc=f"{method} delta", unit="layer",
                     disable=not progress):
        do(name, None)
    if method == "bitdelta" and config.distill_steps:
        if calib_ids is None:
            raise ConfigError("BitDelta scale distillation needs calibration tokens (calibration=None was given)")
        distill_scales(base, finetuned, linear, plan.dense, calib_ids, config, progress)
    order = list(plan.linear)
    delta = Delta(method, config.to_dict(), model_hash(base),
                  {n: linear[n] for n in order}, {n: t.to(torch.float16) for n, t in plan.dense.items()},
                  plan.shared, sorted(rows, key=lambda r: order.index(r["name"])))
    delta.extra = {"counts": plan.counts(), "compress_seconds": time.perf_counter() - start,
                   "calibration": list(calib_ids.shape) if calib_ids is not None else None}
    return delta


def distill_scales(base: nn.Module, finetuned: nn.Module, linear: dict, dense: dict, calib_ids: torch.Tensor,
                   config, progress: bool = True) -> list[float]:
    """BitDelta's scale distillation (Liu et al. 2024, Sec. 3.1), in place on the sign deltas of
    ``linear``: with every base weight frozen, the per-matrix scales are trained by Adam to
    minimise the mean squared difference between the logits of base + delta and of the fine-tune
    on ``calib_ids`` [n, seqlen]. Returns the loss of every step."""
    # the norms' deltas as they will be stored (float16), so the scales are fit to the final model
    staged = Delta("bitdelta", {}, "", linear, {n: t.to(torch.float16) for n, t in dense.items()}, [], [])
    served = attach(base, staged, verify=False)
    trainable = {p: p.requires_grad for p in served.parameters()}  # the base's own flags, restored below
    for p in trainable:
        p.requires_grad_(False)
    scales = []
    for m in served.modules():
        if isinstance(m, DeltaLinear):
            scale = nn.Parameter(m.delta_scale.detach().clone())
            del m._buffers["delta_scale"]
            m.delta_scale = scale  # the packed format reads it, so the gradient reaches it
            scales.append((m, scale))
    # Adam moves a parameter by about lr per step whatever its size: a learning rate per matrix of
    # distill_lr x its starting scale makes distill_lr the relative step for every matrix alike
    optimizer = torch.optim.Adam([{"params": [p], "lr": config.distill_lr * max(float(p.abs()), 1e-12)}
                                  for _, p in scales])
    g = torch.Generator().manual_seed(0)
    losses = []
    try:
        with torch.enable_grad():  # compress() runs under no_grad
            for _ in tqdm(range(config.distill_steps), desc="BitDelta scale distillation", unit="step",
                          disable=not progress):
                pick = torch.randperm(calib_ids.shape[0], generator=g, device="cpu")[:config.distill_batch]
                batch = calib_ids[pick.to(calib_ids.device)].to(model_device(finetuned))
                with torch.no_grad():
                    target = finetuned(input_ids=batch, use_cache=False).logits.float()
                loss = (served(input_ids=batch, use_cache=False).logits.float() - target).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss))
    finally:
        for p, flag in trainable.items():
            p.requires_grad_(flag)
    names = {id(m): n for n, m in served.named_modules()}
    for m, scale in scales:
        linear[names[id(m)]].scale = scale.detach().clone()
    return losses


def check_base(base: nn.Module, delta: Delta) -> None:
    found = model_hash(base)
    if found != delta.base_hash:
        raise CheckpointError(f"this delta was made for a base with parameter hash {delta.base_hash[:16]}..., "
                              f"the given base hashes to {found[:16]}... (spec {delta.base_spec!r} at compression): "
                              "apply it to the base it was made from")


@torch.no_grad()
def apply(base: nn.Module, delta: Delta, verify: bool = True) -> nn.Module:
    """Add the reconstructed delta to ``base`` in place and return it (a dense fine-tune)."""
    if verify:
        check_base(base, delta)
    params = dict(base.named_parameters())
    for name, fmt in delta.linear.items():
        w = base.get_submodule(name).weight
        w.add_(fmt.dequantize(torch.float32).to(w.dtype))
    for name, d in delta.dense.items():
        params[name].add_(d.to(params[name].dtype))
    return base


def attach(base: nn.Module, delta: Delta, verify: bool = True) -> nn.Module:
    """A fine-tune served over ``base``: a model sharing every base parameter and buffer (no copy),
    whose compressed linears are :class:`DeltaLinear` around the base's own layers and whose
    dense-delta parameters (norms) are small new tensors. ``base`` itself is not changed."""
    if verify:
        check_base(base, delta)
    shared = {id(t): t for t in (*base.parameters(), *base.buffers())}
    model = copy.deepcopy(base, memo=shared)
    for name, fmt in delta.linear.items():
        set_module(model, name, DeltaLinear(base.get_submodule(name), fmt))
    with torch.no_grad():
        for name, d in delta.dense.items():
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            old = getattr(module, attr)
            setattr(module, attr, nn.Parameter(old.detach() + d.to(old.dtype), requires_grad=False))
    return model.eval()


def served_bytes(served: nn.Module, base: nn.Module) -> int:
    """Bytes a fine-tune served by :func:`attach` holds beside the base: every parameter and
    buffer storage the base does not own (compressed deltas, changed norms) plus the decoded CSR
    matrices its :class:`DeltaLinear` layers keep once they have run."""
    shared = {t.untyped_storage().data_ptr() for t in (*base.parameters(), *base.buffers())}
    own: dict[int, int] = {}
    for t in (*served.parameters(), *served.buffers()):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared:
            own[ptr] = t.untyped_storage().nbytes()
    csr = 0
    for m in served.modules():
        if isinstance(m, DeltaLinear) and m._csr is not None:
            parts = (m._csr.crow_indices(), m._csr.col_indices(), m._csr.values())
            csr += sum(t.untyped_storage().nbytes() for t in parts)
    return sum(own.values()) + csr


@torch.no_grad()
def balance_stats(base: nn.Module, finetuned: nn.Module, calib_ids: torch.Tensor, tokens: int = 16,
                  progress: bool = True) -> list[dict]:
    """DeltaDQ's "balanced intermediate results", measured per linear layer.

    For ``tokens`` calibration inputs x of each layer and each output row i, the products
    D_ij x_j (j over inputs) are the intermediate results of y_i = sum_j D_ij x_j. Returned per
    layer: their mean (over rows and tokens) variance and min-max range, for the delta D and, as
    the reference, for the fine-tuned weight W itself.
    """
    base_params = dict(base.named_modules())
    rows = []
    for step in layerwise(finetuned, calib_ids[:1], progress=progress):
        captured = {}
        linears = {n: m for n, m in step.layer.named_modules() if isinstance(m, nn.Linear)}
        hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: captured.setdefault(n, args[0]))
                 for n, m in linears.items()]
        try:
            step.layer(step.hidden[0], **step.kwargs[0])
        finally:
            for h in hooks:
                h.remove()
        for n, m in linears.items():
            full = f"{step.name}.{n}"
            x = captured[n].reshape(-1, m.in_features)[:tokens].to(torch.float32)      # [T, in]
            w = m.weight.to(torch.float32)
            d = w - base_params[full].weight.to(torch.float32)
            row = {"name": full}
            for label, mat in (("delta", d), ("weight", w)):
                prod = mat.unsqueeze(0) * x.unsqueeze(1)                               # [T, out, in]
                row[f"{label}_var"] = float(prod.var(dim=2).mean())
                row[f"{label}_range"] = float((prod.amax(dim=2) - prod.amin(dim=2)).mean())
            rows.append(row)
    return rows
