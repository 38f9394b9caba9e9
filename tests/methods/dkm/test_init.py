"""The fast scalar k-means pieces against their plain definitions."""

import torch


def test_sorted_lloyd_equals_the_plain_lloyd_step():
    from llmpress.methods.dkm.init import _lloyd_1d, _lloyd_step

    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 200, generator=g)
    n = torch.rand(3, 200, generator=g) * (torch.rand(3, 200, generator=g) > 0.2)
    c = x[:, :6].clone()
    plain = c.unsqueeze(-1)
    for _ in range(7):
        plain = _lloyd_step(x.unsqueeze(-1), n, plain)
    fast = _lloyd_1d(x, n, c, 7)
    assert torch.allclose(fast, plain.squeeze(-1).sort(dim=1).values, atol=1e-6)


def test_draws_follow_the_weights():
    from llmpress.methods.dkm.init import _draw

    g = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.0, 1.0, 0.0, 3.0]]).expand(4000, 4)
    picks = _draw(p, g)
    assert set(picks.tolist()) == {1, 3}                      # never a zero-weight row
    assert abs(float((picks == 3).float().mean()) - 0.75) < 0.03
