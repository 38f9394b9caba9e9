"""Binary-coding quantization of independent groups of values (ShiftAddLLM, You et al. 2024, Sec. 4.1).

Each group x [g] is approximated by q scales and q sign vectors, x ~= sum_i alpha_i * b_i with
b_i in {-1, +1}^g. The greedy start takes b_i = sign(residual), alpha_i = mean |residual|;
alternating refinement then solves alpha by least squares for fixed b, and b by exhaustive search
over the 2^q codewords for fixed alpha. Both steps are exact minimisers of the squared error
over the variable they change, and a round is only kept where it lowered a group's error, so
refinement can never be worse than its start.

Alternating refinement only finds a local minimum, and from the greedy start it is often a poor
one: on the default model's layers the greedy start ends 20-30% above what a plain symmetric
uniform grid reaches. So refinement also runs from a second start, the best uniform grid: the
scales (2^(q-1) s, ..., 2 s, s) make the 2^q levels exactly the odd multiples of s, a symmetric
uniform grid, so BCQ contains every such grid. Each group keeps the better of the two results.

Every step also takes an optional weight v [N, g] >= 0 per value: the objective becomes
sum_k v_k (x_k - sum_i alpha_i b_ik)^2, so weighted least squares for alpha, and the same
per-value code search (weights do not change which level is nearest). The ShiftAdd quantizer
weights each column by what its error costs in output error (see :mod:`.quantize`).

Shapes: x [N, g] (N groups), alpha [N, q], codes [N, q, g] in {-1, +1}, weight [N, g] or None.
"""

from __future__ import annotations

import functools

import torch

# Bound the [elements, 2^q] distance table of the codeword search (bytes of float64).
_SEARCH_BYTES = 1 << 26


@functools.lru_cache(maxsize=32)
def codewords(q: int, dtype=torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """[2^q, q] in {-1, +1}: row k has +1 in column i where bit i of k is set (cached: do not modify)."""
    k = torch.arange(1 << q, device=device).unsqueeze(1)
    return (((k >> torch.arange(q, device=device)) & 1).to(dtype) * 2 - 1)


def greedy(x: torch.Tensor, q: int, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    residual = x.clone()
    alphas, codes = [], []
    for _ in range(q):
        b = torch.where(residual >= 0, 1.0, -1.0).to(x.dtype)
        a = residual.abs().mean(dim=1) if weight is None else (weight * residual.abs()).sum(1) / weight.sum(1)
        residual -= a.unsqueeze(1) * b
        alphas.append(a)
        codes.append(b)
    return torch.stack(alphas, 1), torch.stack(codes, 1)


def fit_scales(x: torch.Tensor, codes: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares alpha [N, q] for fixed codes: the normal equations (B V B^T) alpha = B V x
    (V = diag(weight), the identity if None), solved with the pseudo-inverse so that repeated or
    opposite planes (a singular B B^T) still get a minimiser."""
    # Broadcast products, not batched matmul: these matrices are tiny, and threaded matmul on
    # tiny batches costs milliseconds per call on a busy machine.
    weighted = codes if weight is None else codes * weight.unsqueeze(1)
    gram = (weighted.unsqueeze(2) * codes.unsqueeze(1)).sum(3)
    rhs = (weighted * x.unsqueeze(1)).sum(2)
    return (torch.linalg.pinv(gram) * rhs.unsqueeze(1)).sum(2)


def nearest_codes(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """For fixed alpha [N, q], the codes [N, q, g] minimising |x - alpha . b| element by element."""
    n, g = x.shape
    q = alpha.shape[1]
    words = codewords(q, x.dtype, x.device)                 # [2^q, q]
    levels = code_levels(alpha, words)              # [N, 2^q]: every value a code can take
    rows = max(1, _SEARCH_BYTES // (8 * g * (1 << q)))
    best = torch.cat([(x[i:i + rows].unsqueeze(2) - levels[i:i + rows].unsqueeze(1)).abs().argmin(dim=2)
                      for i in range(0, n, rows)])
    return words[best].transpose(1, 2).contiguous()


def code_levels(alpha: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """[N, 2^q]: the value of every codeword for each group's scales alpha [N, q]."""
    return (alpha.unsqueeze(1) * words.unsqueeze(0)).sum(2)


def reconstruct(alpha: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return (alpha.unsqueeze(2) * codes).sum(1)


def group_error(x: torch.Tensor, alpha: torch.Tensor, codes: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) squared error per group, [N]."""
    err = (x - reconstruct(alpha, codes)).pow(2)
    return (err if weight is None else err * weight).sum(1)


# Clipping ratios tried by the uniform start: the grid's outermost level at this fraction of max |x|.
UNIFORM_CLIPS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def uniform_start(x: torch.Tensor, q: int, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each group, the symmetric uniform grid (levels: odd multiples of s) with the lowest
    error over :data:`UNIFORM_CLIPS`, as BCQ scales [N, q] and codes [N, q, g]."""
    powers = torch.exp2(torch.arange(q - 1, -1, -1, dtype=x.dtype, device=x.device))   # (2^(q-1), ..., 1)
    top = x.abs().amax(dim=1, keepdim=True)
    best = None
    for clip in UNIFORM_CLIPS:
        alpha = clip * top / ((1 << q) - 1) * powers                  # outermost level = clip * max|x|
        codes = nearest_codes(x, alpha)
        err = group_error(x, alpha, codes, weight)
        if best is None:
            best = (alpha, codes, err)
        else:
            better = err < best[2]
            best = (torch.where(better.unsqueeze(1), alpha, best[0]),
                    torch.where(better.view(-1, 1, 1), codes, best[1]), torch.where(better, err, best[2]))
    return best[0], best[1]


def refine(x: torch.Tensor, alpha: torch.Tensor, codes: torch.Tensor, rounds: int,
           weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``rounds`` of alternating refinement from (alpha, codes); returns them with the error [N]."""
    err = group_error(x, alpha, codes, weight)
    for _ in range(rounds):
        new_alpha = fit_scales(x, codes, weight)
        new_codes = nearest_codes(x, new_alpha)
        new_err = group_error(x, new_alpha, new_codes, weight)
        better = new_err < err
        if not better.any():
            break
        alpha = torch.where(better.unsqueeze(1), new_alpha, alpha)
        codes = torch.where(better.view(-1, 1, 1), new_codes, codes)
        err = torch.where(better, new_err, err)
    return alpha, codes, err


def bcq(x: torch.Tensor, q: int, rounds: int = 5, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Alternating refinement (``rounds``) from the greedy and from the uniform start, the better
    per group; x [N, g] (and ``weight``) are promoted to float64. Returns alpha [N, q], codes [N, q, g]."""
    x = x.to(torch.float64)
    weight = weight.to(torch.float64) if weight is not None else None
    a1, c1, e1 = refine(x, *greedy(x, q, weight), rounds, weight)
    a2, c2, e2 = refine(x, *uniform_start(x, q, weight), rounds, weight)
    better = e2 < e1
    return torch.where(better.unsqueeze(1), a2, a1), torch.where(better.view(-1, 1, 1), c2, c1)
