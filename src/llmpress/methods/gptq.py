"""GPTQ (Frantar et al., ICLR 2023): uniform group-wise codes chosen column by column with
Hessian-based error feedback. Stored exactly like RTN (:mod:`llmpress.formats.uniform`), so any
difference between the two is the algorithm, not the format.

With ``act_order`` columns are visited in order of decreasing H[j, j] (the inputs with the most
energy first, while there is the most freedom left to compensate them). Group scales and zeros
are then fixed up front from the unquantized weights ("static groups"), so the stored groups
stay contiguous in the original column order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError
from llmpress.formats import bitpack, uniform
from llmpress.methods.error_feedback import quantize_columns
from llmpress.methods.hessian import ordered_inverse


@dataclass
class GPTQConfig(JsonConfig):
    """``bits`` 2..8; ``group_size`` input columns per scale/zero (0 = whole row; a size that does
    not divide the width leaves a shorter last group); ``damp`` x mean(diag H) is added to H's
    diagonal; ``block_size`` columns per lazy update; ``symmetric``: every group's zero is
    2**(bits-1) (llama.cpp's Q8_0/Q4_0 grid, so the codes export to GGUF exactly)."""

    bits: int = 4
    group_size: int = 64
    act_order: bool = False
    symmetric: bool = False
    damp: float = 0.01
    block_size: int = 128

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ConfigError(f"GPTQ supports 2..8 bits, got {self.bits!r}")
        if not isinstance(self.group_size, int) or self.group_size < 0:
            raise ConfigError(f"group_size must be an integer >= 0 (0 = one group per row), got {self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        if not 0 <= self.damp < 1:
            raise ConfigError(f"damp must be in [0, 1) (a fraction of the mean Hessian diagonal), got {self.damp}")
        if self.block_size < 1:
            raise ConfigError(f"block_size must be >= 1, got {self.block_size}")


class _UniformColumns:
    """Per-(row, group) asymmetric grids, fixed from the weights when each group starts
    (or, with ``static``, for every group before the first column)."""

    def __init__(self, spec: uniform.UniformSpec, order: torch.Tensor, static_from: torch.Tensor | None,
                 symmetric: bool = False):
        rows, dev = spec.shape[0], order.device
        self.spec, self.order = spec, order.tolist()  # read per column: a list, not a device tensor
        self.qmax = (1 << spec.bits) - 1
        self.symmetric = symmetric
        self.scale = torch.ones(rows, spec.n_groups, dtype=torch.float16, device=dev)
        self.zero = torch.zeros(rows, spec.n_groups, dtype=torch.uint8, device=dev)
        self.codes = torch.zeros(spec.shape, dtype=torch.uint8, device=dev)
        self.group = 0 if static_from is not None else spec.group
        if static_from is not None:
            g = spec.group
            for k in range(spec.n_groups):
                self._fit(k, static_from[:, k * g:(k + 1) * g])

    def _fit(self, k: int, weights: torch.Tensor) -> None:
        # RTN's grid for this group alone: same rounding of scales to float16 and of zeros.
        grid = uniform.quantize(weights.to(torch.float32), self.spec.bits, 0, self.symmetric)
        self.scale[:, k] = grid.scale[:, 0]
        self.zero[:, k] = grid.int_zeros()[:, 0]

    def start_group(self, col: int, weights: torch.Tensor) -> None:
        if self.group:
            self._fit(col // self.spec.group, weights)

    def quantize_column(self, col: int, w: torch.Tensor) -> torch.Tensor:
        orig = self.order[col]
        k = orig // self.spec.group
        s = self.scale[:, k].to(torch.float64)
        z = self.zero[:, k].to(torch.float64)
        q = torch.clamp(torch.round(w / s) + z, 0, self.qmax)
        self.codes[:, orig] = q.to(torch.uint8)
        return (q - z) * s


def quantize(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig, name: str = "?") -> uniform.UniformTensor:
    """weight [out, in], hessian [in, in] (X^T X of the layer's calibration inputs) -> uniform codes."""
    spec = uniform.UniformSpec(tuple(weight.shape), config.bits, config.group_size)
    w, order, upper = ordered_inverse(weight, hessian, config.damp, name, config.act_order)
    columns = _UniformColumns(spec, order, w if config.act_order else None, config.symmetric)
    quantize_columns(w[:, order], upper, columns, config.block_size)
    rows, n_groups = spec.shape[0], spec.n_groups
    return uniform.UniformTensor(spec, bitpack.pack(columns.codes, spec.bits), columns.scale,
                                 bitpack.pack(columns.zero.reshape(rows * n_groups), spec.bits))
