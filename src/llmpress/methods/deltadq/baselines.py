"""Baselines on the same (base, fine-tune) pair: DARE, BitDelta, magnitude pruning + quantization."""

from __future__ import annotations

import torch

from llmpress.formats import dropout_masks, sign_delta
from llmpress.formats.sparse_delta import FLOAT_BITS, SparseDeltaTensor, from_kept, index_bits
from llmpress.methods.deltadq.config import keep_fraction


def dare(delta: torch.Tensor, ratio: float, bits: int, seed: int) -> SparseDeltaTensor:
    """DARE (Yu et al. 2023, "Language Models are Super Mario"): drop every entry independently with
    probability p, rescale survivors by 1 / (1 - p). The mask comes from ``seed``."""
    d = delta.detach().to(torch.float32)
    p = 1 - keep_fraction(ratio, bits)
    row, col = dropout_masks.bernoulli_mask(*d.shape, p, seed).nonzero(as_tuple=True)
    return from_kept(tuple(d.shape), row, col, d[row, col] / (1 - p), bits, 0, mask="bernoulli", seed=seed, p=p)


def magnitude(delta: torch.Tensor, ratio: float, bits: int) -> SparseDeltaTensor:
    """Keep the largest-magnitude entries of every row (no rescaling), their column indices stored,
    values quantized to ``bits``: per kept entry bits + ceil(log2 cols) bits within 1/ratio of fp16."""
    d = delta.detach().to(torch.float32)
    rows, cols = d.shape
    per_entry = bits + index_bits(cols)
    keep = int(FLOAT_BITS * cols / (ratio * per_entry))
    if keep < 1:
        from llmpress.errors import ConfigError

        raise ConfigError(f"magnitude pruning at ratio {ratio} with {bits}-bit values keeps 0 entries of a "
                          f"{cols}-wide row; use a smaller ratio or fewer bits")
    keep = min(keep, cols)
    col = d.abs().topk(keep, dim=1).indices.sort(dim=1).values
    row = torch.arange(rows, device=col.device).unsqueeze(1).expand_as(col)
    return from_kept((rows, cols), row.reshape(-1), col.reshape(-1), d[row, col].reshape(-1), bits, 0,
                     mask="indices")


def bitdelta(delta: torch.Tensor) -> sign_delta.SignDeltaTensor:
    """BitDelta (Liu et al. 2024): sign(delta) and the scale mean |delta|, which minimises the
    squared error of a scaled sign matrix."""
    return sign_delta.quantize(delta)
