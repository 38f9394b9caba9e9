"""eDKM sharding: 2 processes on the gloo backend give what one process gives, with half the index list."""

from dataclasses import replace

import torch

from llmpress.methods.dkm import DKMConfig, SavedStats, cluster, initial_centroids

from tests.gloo import on_ranks


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


def _sharded_step():
    out, c, grad, stats = _step(replace(CONFIG, shard=True))
    return out, c, grad, stats.to_dict()


def test_two_ranks_match_one():
    single = _step(CONFIG)
    ranks = on_ranks(_sharded_step)
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
