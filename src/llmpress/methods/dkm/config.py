"""Settings of differentiable k-means (DKM) clustering, per tensor and per model.

:class:`DKMConfig` is what one weight tensor is clustered with; :class:`DKMModelConfig` says which
modules of a model are clustered and with which :class:`DKMConfig`, per module type and per
module name (eDKM keeps the embedding at 8 bits while the linears go to 3).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields, replace

from llmpress.config import JsonConfig, check_int
from llmpress.errors import ConfigError

# Which implementation computes the soft k-means (all give the same numbers, see methods/dkm/__init__.py).
MEMORY_MODES = ("auto", "naive", "unique", "table", "fused")
VALUE_DTYPES = ("float16", "bfloat16")
INITS = ("kmeans++", "kmeans1d")
SENSITIVITIES = ("none", "hessian")
# A table over 16-bit patterns has as many rows as the patterns its groups use; with few rows
# per group most weights are distinct, G tables of U rows cost more than the [N, K] naive math.
FUSED_MAX_ROWS = 4


@dataclass
class DKMConfig(JsonConfig):
    """How one weight tensor is clustered.

    - ``n_bits``: 2**n_bits centroids (1..8); each stored index costs n_bits per ``cluster_dim`` weights.
    - ``tau``: softmax temperature, in units of the tensor's weight variance when ``tau_relative``
      (so one setting suits layers of different scale), else absolute (units of weight**2).
    - ``tau_final``: None keeps ``tau`` for the whole run; a value (same units) anneals the
      temperature geometrically from ``tau`` at the first training step to ``tau_final`` at the last.
      A soft start lets weights change cluster (with a hard one only the centroids learn, since
      every weight of a cluster gets the same gradient); a hard end makes the finalized palette
      compute what was trained.
    - ``max_iter`` / ``epsilon``: k-means iterations per forward; stop early once no centroid
      moves by more than ``epsilon`` (absolute, weight units; 0 = always ``max_iter``).
    - ``group_size``: output channels (rows) sharing one table; 0 = one table for the tensor.
    - ``cluster_dim``: weights per clustered vector, consecutive along a row (1 = scalar clustering).
    - ``memory``: ``auto`` (``table`` for scalars in tables of many rows, ``fused`` for scalars
      in tables of at most ``FUSED_MAX_ROWS`` rows, ``unique`` for vectors), ``naive`` (plain
      autograd, the reference), ``unique`` (eDKM uniquification:
      attention over the distinct values + a per-weight index list), ``table`` (16-bit bit
      patterns index a 65536-entry table; nothing per weight is saved for backward), ``fused``
      (the naive math compiled by torch.compile, for small groups; always ``max_iter`` iterations).
    - ``marshal``: eDKM cross-device marshaling of tensors saved for backward to ``marshal_device``.
    - ``shard``: eDKM sharding: each torch.distributed rank keeps 1/R of every large tensor saved
      for backward (the index list of ``unique``, the [N, K] tensors of ``naive``).
    - ``value_dtype``: the 16-bit view an fp32 master weight is clustered through by ``table``.
    - ``init``: first-step centroids: ``kmeans++`` (seeded, count-weighted over the distinct
      values, then Lloyd refinement) or ``kmeans1d`` (exact 1-D k-means of the distinct values
      by dynamic programming; scalars only; O(K V log V), seconds per tensor at 8 bits).
    """

    n_bits: int = 3
    tau: float = 1e-3
    tau_relative: bool = True
    tau_final: float | None = None
    max_iter: int = 5
    epsilon: float = 1e-6
    group_size: int = 0
    cluster_dim: int = 1
    memory: str = "auto"
    marshal: bool = False
    marshal_device: str = "cpu"
    shard: bool = False
    value_dtype: str = "float16"
    init: str = "kmeans++"
    seed: int = 0

    def __post_init__(self):
        check_int("DKM", "n_bits", self.n_bits, 1, 8)
        check_int("DKM", "max_iter", self.max_iter, 1)
        check_int("DKM", "group_size", self.group_size, 0)
        check_int("DKM", "cluster_dim", self.cluster_dim, 1)
        check_int("DKM", "seed", self.seed, 0)
        if not isinstance(self.tau, (int, float)) or not self.tau > 0:
            raise ConfigError(f"DKM tau must be > 0 (the softmax temperature), got {self.tau!r}")
        if self.tau_final is not None and (not isinstance(self.tau_final, (int, float)) or not self.tau_final > 0):
            raise ConfigError(f"DKM tau_final must be > 0 (the temperature at the last step) or None, got {self.tau_final!r}")
        if not isinstance(self.epsilon, (int, float)) or self.epsilon < 0:
            raise ConfigError(f"DKM epsilon must be >= 0, got {self.epsilon!r}")
        for name, allowed in (("memory", MEMORY_MODES), ("value_dtype", VALUE_DTYPES), ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"DKM {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.init == "kmeans1d" and self.cluster_dim != 1:
            raise ConfigError("DKM init='kmeans1d' is exact 1-D k-means; with cluster_dim > 1 use init='kmeans++'")
        if self.memory == "table" and self.cluster_dim != 1:
            raise ConfigError("DKM memory='table' indexes scalar 16-bit values; with cluster_dim > 1 use "
                              "memory='unique' (distinct vectors) or 'naive'")

    @property
    def n_clusters(self) -> int:
        return 1 << self.n_bits

    @property
    def implementation(self) -> str:
        """The memory mode that runs: ``auto`` resolved by ``cluster_dim``."""
        if self.memory != "auto":
            return self.memory
        if self.cluster_dim != 1:
            return "unique"
        return "fused" if 0 < self.group_size <= FUSED_MAX_ROWS else "table"


@dataclass
class DKMModelConfig(JsonConfig):
    """Which modules of a model are clustered, and how.

    ``linear`` applies to every ``nn.Linear`` except the output head; ``embedding`` to the input
    embedding (``None`` leaves it alone; a tied output head follows it). ``overrides`` maps a
    module name or an fnmatch pattern (``"model.layers.0.*"``) to settings that replace those of
    its type's config; the value ``None`` excludes matching modules. Later patterns win.
    ``sensitivity``: ``none``, or ``hessian``: the linears' centroid updates (and initial
    k-means) weight each weight's squared error by its input column's calibration Hessian
    diagonal, as sensitivity-weighted post-training k-means does (the embedding is unweighted).
    """

    linear: DKMConfig | None = field(default_factory=DKMConfig)
    embedding: DKMConfig | None = field(default_factory=lambda: DKMConfig(n_bits=8))
    overrides: dict = field(default_factory=dict)
    sensitivity: str = "none"

    def __post_init__(self):
        if self.sensitivity not in SENSITIVITIES:
            raise ConfigError(f"DKM sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
        for name in ("linear", "embedding"):
            v = getattr(self, name)
            if isinstance(v, dict):
                setattr(self, name, DKMConfig.from_dict(v))
            elif v is not None and not isinstance(v, DKMConfig):
                raise ConfigError(f"DKMModelConfig.{name} must be a DKMConfig, a dict or None, got {type(v).__name__}")
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"DKMModelConfig.overrides must map module names to settings, got {self.overrides!r}")
        known = {f.name for f in fields(DKMConfig)}
        for pattern, settings in self.overrides.items():
            if settings is None:
                continue
            if not isinstance(settings, dict):
                raise ConfigError(f"override {pattern!r} must be a dict of DKM settings or None, got {settings!r}")
            unknown = sorted(set(settings) - known)
            if unknown:
                raise ConfigError(f"override {pattern!r} names unknown DKM setting(s) {unknown}; known: {sorted(known)}")
            replace(self.linear or DKMConfig(), **settings)  # validates the values now, not at prepare time

    def for_module(self, name: str, kind: str) -> DKMConfig | None:
        """The config of module ``name`` of ``kind`` ('linear' or 'embedding'), or None to leave it alone."""
        config = getattr(self, kind)
        for pattern, settings in self.overrides.items():
            if name == pattern or fnmatch.fnmatchcase(name, pattern):
                if settings is None:
                    config = None
                else:
                    config = replace(config or getattr(DKMModelConfig(), kind), **settings)
        return config
