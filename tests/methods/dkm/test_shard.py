"""eDKM sharding: 2 processes on the gloo backend give what one process gives, with half the index list."""

import os
import socket
from dataclasses import replace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llmpress.methods.dkm import DKMConfig, SavedStats, cluster, initial_centroids


SHAPE = (256, 512)  # the int16 index list (256 KB) is large enough to be sharded


def _weight() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(*SHAPE, generator=g) * 0.05).to(torch.bfloat16).float()


CONFIG = DKMConfig(n_bits=3, max_iter=3, epsilon=0.0, memory="unique", group_size=64)


def _step(config: DKMConfig):
    w = _weight().requires_grad_(True)
    grad = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(1))
    stats = SavedStats()
    out, c = cluster(w, config, centroids=initial_centroids(_weight(), config), stats=stats)
    (out * grad).sum().backward()
    return out.detach(), c, w.grad, stats


def _worker(rank: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        out, c, grad, stats = _step(replace(CONFIG, shard=True))
        results[rank] = (out, c, grad, stats.to_dict())
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_match_one():
    single = _step(CONFIG)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_worker, args=(_free_port(), results), nprocs=2, start_method="spawn")
        ranks = [results[0], results[1]]
    for got in ranks:
        for a, b in zip(got[:3], single[:3]):
            assert torch.equal(a, b)
    # Each rank keeps half of the int16 index list (2 bytes a weight); the small value table
    # and centroids stay whole.
    whole, index_bytes = single[3], SHAPE[0] * SHAPE[1] * 2
    assert whole.kept_bytes == whole.distinct_bytes > index_bytes
    for _, _, _, stats in ranks:
        assert stats["distinct_bytes"] == whole.distinct_bytes
        assert whole.kept_bytes - stats["kept_bytes"] == index_bytes // 2
