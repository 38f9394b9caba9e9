"""Modules that train through DKM: their weight is soft-clustered in every forward.

Each keeps the float weight as its trainable parameter (shared with the module it wraps) and
its centroids as a buffer, warm-started from the previous step and saved with the state dict.
Outside training (no grad) the clustered weight is computed once and reused until the weight
or the centroids change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmpress.errors import ConfigError
from llmpress.methods import dkm
from llmpress.methods.dkm import DKMConfig


class _Clustered(nn.Module):
    """Shared state: ``weight`` (parameter), ``centroids`` [G, K, d] and ``tau`` (absolute) buffers,
    and the optional ``importance`` [in] of each input column (see :func:`llmpress.methods.dkm.cluster`)."""

    def _setup(self, weight: nn.Parameter, config: DKMConfig, name: str, centroids: torch.Tensor | None,
               importance: torch.Tensor | None = None) -> None:
        dkm.check(weight, config, name)
        self.weight = weight
        self.config = config
        self.name = name
        if importance is not None:
            importance = importance.detach().to(device=weight.device, dtype=torch.float32).clone()
        # Not persistent: it is calibration data, recomputed by whoever prepares the model.
        self.register_buffer("importance", importance, persistent=False)
        if centroids is None:
            centroids = dkm.initial_centroids(weight, config, self.importance, name)
        else:  # a warm start (e.g. the tables of a post-training palette); the shape must fit the config
            expected = (dkm.group_count(weight, config), config.n_clusters, config.cluster_dim)
            if tuple(centroids.shape) != expected:
                raise ConfigError(f"{name}: starting centroids have shape {tuple(centroids.shape)}, its DKM config "
                                  f"needs {expected} (group_size {config.group_size}, {config.n_bits} bits, "
                                  f"cluster_dim {config.cluster_dim})")
            centroids = centroids.detach().to(device=weight.device, dtype=torch.float32).clone()
        self.register_buffer("centroids", centroids)
        self.register_buffer("tau", torch.tensor(dkm.absolute_tau(weight, config), dtype=torch.float64,
                                                device=weight.device))
        # Both ends of an annealed temperature, absolute, from the weights as prepared: a schedule
        # that followed the trained weights' variance would not end where it was asked to.
        self._tau_ends = (float(self.tau), dkm.absolute_tau(weight, config, config.tau_final)
                          if config.tau_final is not None else float(self.tau))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64, device=weight.device))  # training forwards seen
        self._cache: tuple | None = None

    def anneal(self, progress: float) -> None:
        """Set the temperature for a point ``progress`` in [0, 1] of the run: geometric from ``tau``
        (0) to ``tau_final`` (1); constant without ``tau_final``."""
        start, end = self._tau_ends
        p = min(max(float(progress), 0.0), 1.0)
        self.tau.fill_(start * (end / start) ** p)

    def clustered_weight(self) -> torch.Tensor:
        """W~ = A C, differentiable w.r.t. ``weight``; in training the centroids advance one step."""
        if not torch.is_grad_enabled() or not self.weight.requires_grad:
            key = (self.weight._version, self.centroids._version, self.tau._version, self.weight.data_ptr())
            if self._cache is None or self._cache[0] != key:
                with torch.no_grad():
                    w, _ = dkm.cluster(self.weight, self.config, self.centroids, float(self.tau), self.name,
                                       importance=self.importance)
                self._cache = (key, w)
            return self._cache[1]
        w, c = dkm.cluster(self.weight, self.config, self.centroids, float(self.tau), self.name,
                           importance=self.importance)
        if self.training:
            with torch.no_grad():
                self.centroids.copy_(c)
                self.steps += 1
        return w

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_bits={c.n_bits}, group_size={c.group_size}, cluster_dim={c.cluster_dim}, "
                f"memory={c.implementation}, tau={float(self.tau):.3g}, weighted={self.importance is not None}")


class DKMLinear(_Clustered):
    """``nn.Linear`` computing with the clustered weight. x: [..., in] -> [..., out]."""

    def __init__(self, linear: nn.Linear, config: DKMConfig, name: str = "linear",
                 centroids: torch.Tensor | None = None, importance: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._setup(linear.weight, config, name, centroids, importance)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.clustered_weight().to(x.dtype), self.bias)


class DKMEmbedding(_Clustered):
    """``nn.Embedding`` looking rows up in the clustered weight. ids: [...] -> [..., dim]."""

    def __init__(self, embedding: nn.Embedding, config: DKMConfig, name: str = "embedding",
                 centroids: torch.Tensor | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self._setup(embedding.weight, config, name, centroids)
        self._step_weight: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = self.clustered_weight()
        self._step_weight = w if torch.is_grad_enabled() else None
        return F.embedding(ids, w, self.padding_idx)

    def take_step_weight(self) -> torch.Tensor:
        """The clustered weight of this forward pass, for a tied output head (computed once a step)."""
        w, self._step_weight = self._step_weight, None
        return w if w is not None else self.clustered_weight()


class DKMTiedHead(nn.Module):
    """An output head tied to a :class:`DKMEmbedding`: logits use the same clustered weight."""

    def __init__(self, head: nn.Linear, embedding: DKMEmbedding):
        super().__init__()
        self.embedding = [embedding]  # a list, so the embedding is not registered twice
        self.bias = head.bias

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.embedding[0].take_step_weight().to(x.dtype), self.bias)
