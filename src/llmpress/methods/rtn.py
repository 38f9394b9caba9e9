"""Round-to-nearest (RTN): the baseline every other method must beat at equal bits per weight."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError
from llmpress.formats import uniform
from llmpress.formats.ggml_blocks import GGMLBlocks
from llmpress.methods import ggml_grids


@dataclass
class RTNConfig(JsonConfig):
    """``bits`` in 2..8; ``group_size`` input columns share a scale/zero (0 = whole row).

    A group size that does not divide the layer width leaves a shorter last group. ``symmetric``:
    zeros fixed at 2**(bits-1) (llama.cpp's Q8_0/Q4_0 grid; see :func:`uniform.quantize`).
    ``grid``: "uniform", or a llama.cpp block type of ``bits``-bit codes (Q2_K, Q3_K, Q4_K, IQ4_NL),
    each block's grid fitted to the weights (:mod:`llmpress.methods.ggml_grids`; the type fixes the
    groups).
    """

    bits: int = 4
    group_size: int = 128
    symmetric: bool = False
    grid: str = "uniform"

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise ConfigError(f"RTN supports 2..8 bits, got {self.bits!r}")
        if not isinstance(self.group_size, int) or self.group_size < 0:
            raise ConfigError(f"group_size must be an integer >= 0 (0 = one group per row), got {self.group_size!r}")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        ggml_grids.check_grid("RTN", self.grid, self.bits)


def quantize_weight(weight: torch.Tensor, config: RTNConfig) -> uniform.UniformTensor | GGMLBlocks:
    """weight [out_features, in_features] -> group-wise uniform codes (or ggml blocks of ``config.grid``)."""
    if config.grid != "uniform":
        return ggml_grids.round_to_nearest(weight, config.grid)
    return uniform.quantize(weight, config.bits, config.group_size, config.symmetric)
