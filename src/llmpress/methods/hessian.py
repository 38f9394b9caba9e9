"""The layer Hessian H = X^T X of GPTQ-style methods, and the Cholesky factor they work with.

For a linear y = x W^T and calibration inputs X [tokens, in], the output error of a weight change
dW is ||X dW^T||^2 = tr(dW H dW^T). GPTQ (Frantar et al. 2022) and ShiftAddLLM's multi-objective
optimisation both quantize columns in order and push each column's error onto the later columns
through U, the upper Cholesky factor of the (damped) inverse Hessian: H^-1 = U^T U.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from llmpress.errors import ConfigError

# Tries with ten times more damping each before giving up on a Hessian.
_MAX_DAMPING_TRIES = 6


@dataclass
class InverseHessian:
    """``upper`` [in, in] float64 with H_damped^-1 = upper^T upper; ``dead`` [in] bool: inputs that
    never fire (zero diagonal), whose weights carry no output and are set to 0; ``damping`` the
    absolute value added to the diagonal."""

    upper: torch.Tensor
    dead: torch.Tensor
    damping: float


def check_hessian(hessian: torch.Tensor, in_features: int, name: str) -> torch.Tensor:
    h = hessian.to(torch.float64)
    if tuple(h.shape) != (in_features, in_features):
        raise ConfigError(f"layer {name}: Hessian has shape {tuple(h.shape)}, the weight needs "
                          f"{(in_features, in_features)}")
    if not torch.isfinite(h).all():
        raise ConfigError(f"layer {name}: calibration Hessian has NaN/Inf (activations overflowed); "
                          "calibrate in float32 or with fewer/shorter samples")
    return h


def inverse_cholesky(hessian: torch.Tensor, damp: float = 0.01, name: str = "?") -> InverseHessian:
    """Add ``damp`` x mean(diag H) to the diagonal (as GPTQ does) and factor the inverse.

    A Hessian that is not positive definite (too few calibration tokens for the width, or
    collinear inputs) is repaired with more damping, and a warning names the layer.
    """
    h = hessian.to(torch.float64).clone()
    n = h.shape[0]
    diag = torch.diagonal(h)
    dead = diag <= 0
    h[dead, dead] = 1.0
    mean_diag = float(torch.diagonal(h).mean())
    if torch.linalg.cholesky_ex(h).info != 0:
        warnings.warn(f"layer {name}: the calibration Hessian is not positive definite (rank-deficient "
                      f"inputs, e.g. fewer calibration tokens than {n} input features); damping it", stacklevel=2)
    lam = damp * mean_diag
    eye = torch.eye(n, dtype=torch.float64, device=h.device)
    for attempt in range(_MAX_DAMPING_TRIES):
        chol, info = torch.linalg.cholesky_ex(h + lam * eye)
        if info == 0:
            inv = torch.cholesky_inverse(chol)
            upper, info = torch.linalg.cholesky_ex(inv, upper=True)
            if info == 0:
                if attempt:
                    warnings.warn(f"layer {name}: needed damping {lam:.3g} ({lam / mean_diag:.3g} x mean "
                                  f"diagonal) to factor the Hessian", stacklevel=2)
                return InverseHessian(upper, dead, lam)
        lam *= 10
    raise ConfigError(f"layer {name}: the calibration Hessian cannot be factored even with damping "
                      f"{lam / 10:.3g}; use more calibration samples")


def ordered_inverse(weight: torch.Tensor, hessian: torch.Tensor, damp: float, name: str,
                    act_order: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a column-by-column quantizer starts from: weight [out, in], hessian [in, in] ->
    (w, order, upper). ``w`` float64 in the stored column order, with the weights of inputs that
    never fire set to 0 (they carry no output, and zero is what any grid codes best);
    ``order`` [in] the columns in visiting order (decreasing H[j, j] with ``act_order``, else as
    stored); ``upper`` the upper Cholesky factor of the damped inverse Hessian in that order."""
    h = check_hessian(hessian, weight.shape[1], name)
    cols = h.shape[0]
    order = torch.argsort(torch.diagonal(h), descending=True, stable=True) if act_order \
        else torch.arange(cols, device=h.device)
    inv = inverse_cholesky(h[order][:, order], damp, name)
    dead = torch.zeros(cols, dtype=torch.bool, device=h.device)
    dead[order] = inv.dead
    w = weight.detach().to(torch.float64).clone()
    w[:, dead] = 0
    return w, order, inv.upper


def sensitivity(weight: torch.Tensor, inv: InverseHessian) -> float:
    """ShiftAddLLM's layer sensitivity (You et al. 2024, Sec. 4.3): with
    IS = W / diag(chol(H^-1)) (column j divided by the j-th diagonal entry),
    ||IS||_F * std(IS)^2. Large for layers whose weights are large where the Hessian is sharp."""
    d = torch.diagonal(inv.upper)
    score = weight.to(torch.float64) / d.unsqueeze(0)
    return float(score.norm() * score.std().pow(2))


def output_error(weight: torch.Tensor, approx: torch.Tensor, hessian: torch.Tensor) -> float:
    """tr(dW H dW^T) / tr(W H W^T): relative squared output error over the calibration tokens."""
    w = weight.to(torch.float64)
    dw = w - approx.to(torch.float64)
    h = hessian.to(torch.float64)
    den = float(((w @ h) * w).sum())
    return float(((dw @ h) * dw).sum()) / den if den > 0 else 0.0
