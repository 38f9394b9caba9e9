"""The saved-tensor hooks work around any module, not only DKM."""

import torch
from torch import nn

from llmpress.methods.dkm import SavedStats, SavedTensorHooks, SavedTensorMeter, marshal


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8), nn.Softmax(dim=-1))


def _grads(net, x, hooks=None):
    net.zero_grad()
    if hooks is None:
        y = net(x)
    else:
        with hooks:
            y = net(x)
    (y * torch.arange(8.0)).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


def test_marshal_around_any_module_gives_the_same_gradients():
    net, x = _net(), torch.randn(4, 16)
    plain = _grads(net, x)
    with_hooks = _grads(net, x, marshal("cpu"))
    for a, b in zip(plain, with_hooks):
        assert torch.equal(a, b)


def test_parameters_stay_in_place_and_views_are_references():
    w = torch.randn(64, 32, requires_grad=True)
    stats = SavedStats()
    with marshal("cpu", stats=stats):
        a = torch.softmax(w * 2.0, dim=1)      # saves a
        y = (a.T @ a).sum() + (a.t() * 3).sum()  # saves a.T and a (matmul); a.t() is a view
    y.backward()
    assert stats.parameters == 0 and stats.referenced >= 2
    assert stats.distinct_bytes == stats.moved_bytes == a.numel() * 4  # one storage, stored once
    assert stats.packed_bytes >= 3 * a.numel() * 4


def test_meter_changes_nothing_and_counts_distinct_storages():
    net, x = _net(), torch.randn(4, 16)
    plain = _grads(net, x)
    meter = SavedTensorMeter()
    for a, b in zip(plain, _grads(net, x, meter)):
        assert torch.equal(a, b)
    s = meter.stats
    assert s.parameters >= 1 and s.packed >= 3 and 0 < s.distinct_bytes <= s.packed_bytes
    assert s.kept_bytes == s.distinct_bytes and s.moved_bytes == 0


def test_without_a_process_group_sharding_keeps_everything():
    w = torch.randn(256, 256, requires_grad=True)
    hooks = SavedTensorHooks(shard=True)
    with hooks:
        y = torch.softmax(w, dim=0).pow(2).sum()
    y.backward()
    assert hooks.stats.kept_bytes == hooks.stats.distinct_bytes > 0
