"""GPTQ (Frantar et al., ICLR 2023): uniform group-wise codes chosen column by column with
Hessian-based error feedback. Stored exactly like RTN (:mod:`llmpress.formats.uniform`), so any
difference between the two is the algorithm, not the format.

With ``grid`` naming a llama.cpp block type (Q2_K, Q3_K, Q4_K, IQ4_NL), the grids are that type's
(:mod:`llmpress.methods.ggml_grids`, stored as ggml's own blocks): GPTQ's quality reaches llama.cpp
bit for bit through a GGUF file. Each block's sub-scales are fitted when its first column is
reached, weighted by the Hessian diagonal.

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
from llmpress.formats.ggml_blocks import GGMLBlocks, GGMLSpec
from llmpress.methods import ggml_grids
from llmpress.methods.error_feedback import quantize_columns
from llmpress.methods.hessian import ordered_inverse


@dataclass
class GPTQConfig(JsonConfig):
    """``bits`` 2..8; ``group_size`` input columns per scale/zero (0 = whole row; a size that does
    not divide the width leaves a shorter last group); ``damp`` x mean(diag H) is added to H's
    diagonal; ``block_size`` columns per lazy update; ``symmetric``: every group's zero is
    2**(bits-1) (llama.cpp's Q8_0/Q4_0 grid, so the codes export to GGUF exactly); ``grid``:
    "uniform" (llmpress's groups) or a llama.cpp block type whose code width is ``bits`` (Q2_K,
    Q3_K, Q4_K, IQ4_NL; a layer whose width is not a multiple of 256 gets Q4_0, or Q5_0 for
    Q4_K, as in llama.cpp), which then
    fixes the groups (``group_size``, ``symmetric`` unused)."""

    bits: int = 4
    group_size: int = 64
    act_order: bool = False
    symmetric: bool = False
    grid: str = "uniform"
    damp: float = 0.01
    block_size: int = 128

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ConfigError(f"GPTQ supports 2..8 bits, got {self.bits!r}")
        if not isinstance(self.group_size, int) or self.group_size < 0:
            raise ConfigError(f"group_size must be an integer >= 0 (0 = one group per row), got {self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        ggml_grids.check_grid("GPTQ", self.grid, self.bits)
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


class _BlockColumns:
    """ggml block grids (one per row and block of ``spec``'s type), each fitted when its block starts
    (or, given ``static_from``, for every block before the first column), weighted by ``importance`` [in]."""

    def __init__(self, spec: GGMLSpec, order: torch.Tensor, static_from: torch.Tensor | None,
                 importance: torch.Tensor):
        self.type, self.order, self.importance = spec.type, order.tolist(), importance
        self.fields = ggml_grids.FieldsBuilder(spec, order.device)
        self.group = 0 if static_from is not None else self.type.block
        if static_from is not None:
            self.fields.set_blocks(0, ggml_grids.fit(self.type.name, static_from, importance))

    def start_group(self, col: int, weights: torch.Tensor) -> None:
        if self.group:
            b = self.type.block
            self.fields.set_blocks(col // b, ggml_grids.fit(self.type.name, weights, self.importance[col:col + b]))

    def quantize_column(self, col: int, w: torch.Tensor) -> torch.Tensor:
        return self.fields.nearest(w, self.order[col])[1].to(torch.float64)


def quantize(weight: torch.Tensor, hessian: torch.Tensor, config: GPTQConfig,
             name: str = "?") -> uniform.UniformTensor | GGMLBlocks:
    """weight [out, in], hessian [in, in] (X^T X of the layer's calibration inputs) -> uniform codes
    (or ggml blocks of ``config.grid``)."""
    w, order, upper = ordered_inverse(weight, hessian, config.damp, name, config.act_order)
    if config.grid != "uniform":
        spec = GGMLSpec(tuple(weight.shape), ggml_grids.grid_type(config.grid, weight.shape[1]))
        blocks = _BlockColumns(spec, order, w if config.act_order else None, hessian.diagonal().to(w.device))
        quantize_columns(w[:, order], upper, blocks, config.block_size)
        return blocks.fields.build()
    spec = uniform.UniformSpec(tuple(weight.shape), config.bits, config.group_size)
    columns = _UniformColumns(spec, order, w if config.act_order else None, config.symmetric)
    quantize_columns(w[:, order], upper, columns, config.block_size)
    rows, n_groups = spec.shape[0], spec.n_groups
    return uniform.UniformTensor(spec, bitpack.pack(columns.codes, spec.bits), columns.scale,
                                 bitpack.pack(columns.zero.reshape(rows * n_groups), spec.bits))
