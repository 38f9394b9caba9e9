"""Post-training k-means palettization: the baseline DKM must beat at equal bits per weight.

Each table (per tensor, or per group of ``group_size`` output channels) holds 2**bits
centroids found by k-means over the weights (k-means++ seeding and Lloyd steps, or exact
1-D k-means for scalars); every weight (or vector of ``cluster_dim`` weights) is then replaced
by the index of its nearest centroid. No training, no calibration data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmpress.config import JsonConfig, check_int
from llmpress.errors import ConfigError
from llmpress.formats.palette import PaletteTensor, palettize
from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm.config import DKMConfig
from llmpress.methods.dkm.distinct import distinct
from llmpress.methods.dkm.init import kmeans_1d_exact, kmeans_plus_plus

INITS = ("kmeans++", "kmeans1d")


@dataclass
class KMeansConfig(JsonConfig):
    """``bits`` 1..8 (2**bits centroids per table); ``group_size`` output channels per table
    (0 = one table per tensor); ``cluster_dim`` weights per clustered vector; ``init``
    ``kmeans++`` (then ``lloyd_steps`` Lloyd steps, seeded) or ``kmeans1d`` (exact, scalars)."""

    bits: int = 3
    group_size: int = 0
    cluster_dim: int = 1
    init: str = "kmeans++"
    lloyd_steps: int = 50
    seed: int = 0

    def __post_init__(self):
        for name, lo, hi in (("bits", 1, 8), ("group_size", 0, None), ("cluster_dim", 1, None),
                             ("lloyd_steps", 0, None), ("seed", 0, None)):
            check_int("k-means", name, getattr(self, name), lo, hi)
        if self.init not in INITS:
            raise ConfigError(f"k-means init must be one of {INITS}, got {self.init!r}")
        if self.init == "kmeans1d" and self.cluster_dim != 1:
            raise ConfigError("k-means init='kmeans1d' is exact 1-D k-means; with cluster_dim > 1 use 'kmeans++'")


def quantize_weight(weight: torch.Tensor, config: KMeansConfig, name: str = "weight") -> PaletteTensor:
    """weight [out_features, in_features] -> palette (lookup tables + packed indices)."""
    shape_config = DKMConfig(n_bits=config.bits, group_size=config.group_size, cluster_dim=config.cluster_dim,
                             memory="unique")
    pts.check(weight, shape_config, name)
    values, counts, _ = distinct(pts.to_points(weight.detach().float(), shape_config))
    k = 1 << config.bits
    if config.init == "kmeans1d":
        lut = kmeans_1d_exact(values, counts, k)
    else:
        lut = kmeans_plus_plus(values, counts, k, seed=config.seed, lloyd_steps=config.lloyd_steps)
    return palettize(weight, lut, config.group_size)
