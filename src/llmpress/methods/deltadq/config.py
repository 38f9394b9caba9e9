"""Settings of the delta compressors. ``ratio`` is always nominal: fp16 bytes of a linear layer's
delta / bytes of its stored values (the exact ratio, every byte counted, is reported after
compression by :func:`llmpress.methods.deltadq.accounting.account`)."""

from __future__ import annotations

from dataclasses import dataclass

from llmpress.config import JsonConfig, check_int
from llmpress.errors import ConfigError
from llmpress.formats import separate_codes
from llmpress.formats.sparse_delta import FLOAT_BITS

DEFAULT_GROUP_SIZES = (8, 16, 32, 64, 128, 256, 512)


def _check_ratio(ratio) -> None:
    if not isinstance(ratio, (int, float)) or not ratio > 1:
        raise ConfigError(f"compression ratio must be a number > 1, got {ratio!r}")


def _check_value_bits(bits, parts_bits=0) -> None:
    if bits != FLOAT_BITS:
        separate_codes.check_bits(bits, parts_bits)


def keep_fraction(ratio: float, bits: int) -> float:
    """Fraction of entries a sparse delta may keep so its values take 1/ratio of the fp16 bytes."""
    f = FLOAT_BITS / (ratio * bits)
    if f > 1:
        raise ConfigError(f"ratio {ratio} with {bits}-bit values would keep {f:.2f} of the entries (more than all): "
                          f"the ratio cannot be reached by dropping; use a ratio >= {FLOAT_BITS / bits:g} or more bits")
    return f


@dataclass
class DeltaDQConfig(JsonConfig):
    """DeltaDQ (Jiang et al. 2024): group-wise dropout keeping a fraction 16 / (ratio * k) of each
    group, then k-bit uniform codes split into 2^``parts_bits`` parts (fewer parts when k is
    smaller). The group size, and k when ``bits`` lists several, are chosen per layer by output
    error on calibration inputs: every choice stores the same bytes, so the search trades kept
    entries against bits per entry at a fixed budget. ``unbiased`` (default): decode the kept
    values' codes on a grid stretched to keep their full projection; False keeps the
    least-squares grid, which shrinks the delta in every layer and so moves the model back toward
    its base (see :func:`llmpress.formats.separate_codes.unbiased_grid`; BENCHMARKS.md measures
    both)."""

    ratio: float = 16.0
    bits: int | tuple[int, ...] = 4
    parts_bits: int = 1
    group_sizes: tuple[int, ...] = DEFAULT_GROUP_SIZES
    seed: int = 0
    unbiased: bool = True

    def __post_init__(self):
        self.group_sizes = tuple(self.group_sizes)
        if isinstance(self.bits, (list, tuple)):
            self.bits = tuple(self.bits)
        _check_ratio(self.ratio)
        for k in self.bit_choices:
            if not isinstance(k, int) or not 1 <= k <= 8:
                raise ConfigError(f"DeltaDQ quantizes kept values to 1..8 bits, got {self.bits!r}")
        if not isinstance(self.parts_bits, int) or self.parts_bits < 0:
            raise ConfigError(f"parts_bits must be an integer >= 0, got {self.parts_bits!r}")
        if not self.group_sizes or any(not isinstance(g, int) or g < 1 for g in self.group_sizes):
            raise ConfigError(f"group_sizes must be positive integers, got {self.group_sizes}")
        if not self.reachable_bits:
            keep_fraction(self.ratio, min(self.bit_choices))  # raises with the explanation

    @property
    def bit_choices(self) -> tuple[int, ...]:
        return self.bits if isinstance(self.bits, tuple) else (self.bits,)

    @property
    def reachable_bits(self) -> tuple[int, ...]:
        """The bit widths at which dropping entries can reach the ratio (keep fraction <= 1)."""
        return tuple(k for k in self.bit_choices if FLOAT_BITS / (self.ratio * k) <= 1)


@dataclass
class DAREConfig(JsonConfig):
    """DARE (Yu et al. 2023): drop each entry with probability p = 1 - 16 / (ratio * bits), rescale
    the survivors by 1 / (1 - p); ``bits`` 16 keeps them as float16 (plain DARE)."""

    ratio: float = 16.0
    bits: int = 16
    seed: int = 0

    def __post_init__(self):
        _check_ratio(self.ratio)
        _check_value_bits(self.bits)
        keep_fraction(self.ratio, self.bits)


@dataclass
class MagnitudeConfig(JsonConfig):
    """Magnitude pruning + quantization: keep the largest |delta| of each row, store their column
    indices (ceil(log2 cols) bits each) and ``bits``-bit codes, within 1/ratio of the fp16 bytes."""

    ratio: float = 16.0
    bits: int = 4

    def __post_init__(self):
        _check_ratio(self.ratio)
        if self.bits == FLOAT_BITS:
            raise ConfigError("magnitude pruning quantizes its values: bits must be 1..8")
        _check_value_bits(self.bits)


@dataclass
class BitDeltaConfig(JsonConfig):
    """BitDelta (Liu et al. 2024): sign of the delta and one scale per matrix (~16x), the scale
    starting at mean |delta|. ``distill_steps`` > 0: the paper's scale distillation, that many
    Adam steps (``distill_batch`` calibration windows each) on the per-matrix scales so that
    base + delta reproduces the fine-tune's logits on the calibration tokens; ``distill_lr`` is
    relative (each scale's learning rate is distill_lr x its starting value)."""

    distill_steps: int = 0
    distill_lr: float = 0.01
    distill_batch: int = 4

    def __post_init__(self):
        check_int("BitDelta", "distill_steps", self.distill_steps, 0)
        check_int("BitDelta", "distill_batch", self.distill_batch, 1)
        if not self.distill_lr > 0:
            raise ConfigError(f"BitDelta distill_lr must be > 0, got {self.distill_lr!r}")
