"""Differentiable k-means weight clustering: DKM (Cho et al., ICLR 2022) with the memory
techniques of eDKM (Cho et al., IEEE CAL 2024), and a 16-bit bit-pattern path beyond them.

Every weight is softly attached to a table of 2**b centroids; the layer computes with
W~ = A C, where A = softmax(-||w - c||^2 / tau) is refined by soft k-means iterations inside
autograd, so the training loss moves both the weights and, through them, the centroids.

Implementations (``DKMConfig.memory``), all computing the same numbers:

- ``naive`` (:mod:`.reference`): plain autograd over every weight; the reference.
- ``unique`` (:mod:`.unique`): eDKM uniquification, attention over distinct values plus a
  per-weight index list.
- ``table`` (:mod:`.bitpattern`): 16-bit patterns index a 65536-row table; nothing per weight
  is saved for backward.
- ``fused`` (:mod:`.fused`): the naive math compiled by torch.compile, for tables of a few rows
  (where most weights are distinct and tables save nothing).

Combinable with any of them (:mod:`.saved_tensors`): ``marshal`` moves saved tensors to another
device, each storage once; ``shard`` keeps 1/R of every large saved tensor on each of R ranks.
"""

from llmpress.methods.dkm.config import DKMConfig, DKMModelConfig
from llmpress.methods.dkm.engine import absolute_tau, check, cluster, initial_centroids
from llmpress.methods.dkm.points import group_count
from llmpress.methods.dkm.saved_tensors import SavedStats, SavedTensorHooks, SavedTensorMeter, marshal

__all__ = ["DKMConfig", "DKMModelConfig", "SavedStats", "SavedTensorHooks", "SavedTensorMeter", "absolute_tau",
           "check", "cluster", "group_count", "initial_centroids", "marshal"]
