"""GPTQ-style perplexity: non-overlapping windows of ``seqlen`` tokens, mean token NLL, exp.

Windows are cut from one tokenization of the whole split (no special tokens), the tail that does
not fill a window is dropped, and each window predicts its last ``seqlen - 1`` tokens.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from llmpress.errors import ConfigError

# Windows evaluated by each profile (None = all). "demo" exists so `make demo` stays short.
PROFILES: dict[str, int | None] = {"demo": 8, "quick": 32, "full": None}


def windows_for(profile: str) -> int | None:
    if profile not in PROFILES:
        raise ConfigError(f"unknown evaluation profile {profile!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[profile]


@torch.inference_mode()
def perplexity(model: torch.nn.Module, ids: torch.Tensor, seqlen: int = 2048, max_windows: int | None = None,
               batch_size: int = 1, progress: bool = True) -> dict:
    """ids: 1-D LongTensor of the tokenized split. Returns ppl with seqlen, window and token counts."""
    if ids.dim() != 1:
        raise ConfigError(f"perplexity takes a 1-D token tensor, got shape {tuple(ids.shape)}")
    if seqlen < 2:
        raise ConfigError(f"seqlen must be >= 2, got {seqlen}")
    if max_windows is not None and max_windows < 1:
        raise ConfigError(f"--windows must be at least 1, got {max_windows} (or leave it out to use --profile)")
    total_windows = ids.numel() // seqlen
    if total_windows == 0:
        raise ConfigError(f"text has {ids.numel()} tokens, fewer than one window of seqlen={seqlen}")
    n = total_windows if max_windows is None else min(max_windows, total_windows)
    windows = ids[: n * seqlen].view(n, seqlen)
    device = next(model.parameters()).device
    nll, tokens = 0.0, 0
    start = time.perf_counter()
    with tqdm(total=n, desc=f"perplexity (seqlen {seqlen})", unit="window", disable=not progress) as bar:
        for i in range(0, n, batch_size):
            x = windows[i:i + batch_size].to(device)
            logits = model(input_ids=x, use_cache=False).logits[:, :-1]
            target = x[:, 1:]
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                                   reduction="sum").item()
            tokens += target.numel()
            bar.update(x.size(0))
    return {"ppl": math.exp(nll / tokens), "nll": nll / tokens, "seqlen": seqlen, "windows": n,
            "total_windows": total_windows, "tokens": tokens, "seconds": time.perf_counter() - start}
