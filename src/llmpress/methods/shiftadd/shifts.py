"""Round scales to powers of two (PoT) or additive powers of two (APoT), so that multiplying by a
scale becomes shifts and adds (ShiftAddLLM, You et al. 2024, Sec. 4.1).

A scale a becomes sum_{t<terms} (-1)^s_t * 2^e_t, chosen greedily: each term is the power of two
nearest (in linear distance) to what the previous terms left over, with the left-over's sign.
A left-over of exactly 0 gets the exponent :data:`ZERO_EXPONENT` (a term worth nothing).
"""

from __future__ import annotations

import torch

from llmpress.formats.bcq import ZERO_EXPONENT


def round_to_shifts(alpha: torch.Tensor, terms: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """alpha: float tensor of any shape -> (exponents int16 [..., terms], negative bool [..., terms],
    rounded values float64 [...])."""
    rest = alpha.to(torch.float64)
    exps, negs = [], []
    for _ in range(terms):
        mag = rest.abs()
        low = torch.floor(torch.log2(mag.clamp(min=1e-300)))
        # 2^low <= mag < 2^(low+1): the nearer of the two in linear distance (3/2 * 2^low is the midpoint)
        e = torch.where(mag >= 1.5 * torch.exp2(low), low + 1, low)
        e = torch.where(mag > 0, e, torch.full_like(e, ZERO_EXPONENT)).clamp(ZERO_EXPONENT, 127)
        neg = rest < 0
        term = torch.where(neg, -1.0, 1.0).to(torch.float64) * torch.exp2(e)
        rest = rest - term
        exps.append(e.to(torch.int16))
        negs.append(neg)
    exps_t, negs_t = torch.stack(exps, -1), torch.stack(negs, -1)
    return exps_t, negs_t, shifts_value(exps_t, negs_t)


def shifts_value(exponents: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """float64 [...] from exponents/negative [..., terms]."""
    sign = torch.where(negative, -1.0, 1.0).to(torch.float64)
    return torch.ldexp(sign, exponents.to(torch.int32)).sum(-1)
