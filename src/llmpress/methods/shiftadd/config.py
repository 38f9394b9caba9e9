"""Settings of ShiftAddLLM (You et al., NeurIPS 2024) as a JSON-round-tripping dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError

# Columns sharing one set of scales in each mode. "lat": a block of 8 input columns, one packed
# byte of every bit-plane row, so each look-up result is shifted once ("block-wise" scales, the
# kernel-friendly variant). "acc": every column has its own scales ("column-wise"), which the
# GPTQ-style error feedback can refit for each column just before it is quantized.
MODE_COL_GROUP = {"lat": 8, "acc": 1}


@dataclass
class ShiftAddConfig(JsonConfig):
    """``bits``: binary planes per weight (1..8). ``mode``: "lat" or "acc" (see MODE_COL_GROUP).
    ``row_group``: output rows sharing a scale (must divide every layer's row count; 0 = all
    rows of the layer). ``terms``: signed powers of two per scale (1 = PoT, 2+ = APoT).
    ``rounds``: alternating BCQ refinement rounds. ``damp``: fraction of the mean Hessian
    diagonal added to it. ``fit_window``: columns whose scales are fit together when the first
    of them is reached (a multiple of the mode's column group; 8 = one byte of every plane row);
    1 refits every "acc" column just before it is quantized, 8x more fits for a small gain.
    ``act_order``: visit columns (blocks of the mode's column group) by decreasing calibration
    energy H[j, j], as GPTQ's act order; free in the format, since scales are per column group.
    ``avg_bits``: when set, each layer gets 2, 3 or 4 bits (``choices``)
    by the automated allocation, under this average of stored bits per weight (scales included).
    """

    bits: int = 3
    mode: str = "acc"
    row_group: int = 64
    terms: int = 2
    rounds: int = 5
    damp: float = 0.01
    block_size: int = 128
    fit_window: int = 8
    act_order: bool = True
    avg_bits: float | None = None
    choices: tuple[int, ...] = (2, 3, 4)

    def __post_init__(self):
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise ConfigError(f"ShiftAdd bits (binary planes) must be an integer in 1..8, got {self.bits!r}")
        if self.mode not in MODE_COL_GROUP:
            raise ConfigError(f"ShiftAdd mode must be one of {sorted(MODE_COL_GROUP)}, got {self.mode!r}")
        if not isinstance(self.row_group, int) or self.row_group < 0:
            raise ConfigError(f"row_group must be an integer >= 0 (0 = all rows), got {self.row_group!r}")
        if not 1 <= self.terms <= 4:
            raise ConfigError(f"terms (powers of two per scale) must be in 1..4, got {self.terms}")
        if self.rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {self.rounds}")
        if not 0 <= self.damp < 1:
            raise ConfigError(f"damp must be in [0, 1), got {self.damp}")
        if self.block_size < 1:
            raise ConfigError(f"block_size must be >= 1, got {self.block_size}")
        if self.fit_window < 1 or self.fit_window % self.col_group or self.block_size % self.fit_window:
            raise ConfigError(f"fit_window must be a positive multiple of the {self.mode} column group "
                              f"({self.col_group}) that divides block_size {self.block_size}, got {self.fit_window}")
        self.choices = tuple(self.choices)
        if not self.choices or any(not 1 <= b <= 8 for b in self.choices):
            raise ConfigError(f"bit choices must lie in 1..8, got {self.choices}")
        if self.avg_bits is not None and self.avg_bits < min(self.choices):
            # the exact floor (codes + scales) is checked against each model by the allocation
            raise ConfigError(f"avg_bits {self.avg_bits} is below the smallest bit choice {min(self.choices)}")

    @property
    def col_group(self) -> int:
        return MODE_COL_GROUP[self.mode]
