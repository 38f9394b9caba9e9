"""Data parallelism for the fine-tuning loop (``torchrun --nproc_per_node R``), without DDP wrappers.

Every rank holds the whole model and computes the same clustering (DKM's soft k-means is a
deterministic function of the weights, so the centroids agree without communication). A step's
global batch is the one a single process would draw; rank r takes every R-th example of it,
and the gradients are summed across ranks. The loss of a step is normalised by the target tokens
of the whole global batch, so the summed gradient equals the single-process gradient up to the
order of floating-point additions: one process and R processes train the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: str = "cpu"   # where collectives run: NCCL reduces only GPU tensors

    @property
    def main(self) -> bool:
        """The rank that logs, evaluates and writes files."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This rank's share of one micro-batch of a global batch."""
        return items[self.rank::self.size]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks (float64, so token counts stay exact)."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over the ranks, in one flat buffer (one collective)."""
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def current() -> World:
    """The world of the initialised default process group, else one rank."""
    if dist.is_available() and dist.is_initialized():
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        return World(dist.get_rank(), dist.get_world_size(), device)
    return World()


def init_from_env() -> World:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU.

    Returns the single-rank world when not launched by torchrun. Safe to call twice.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return current()
