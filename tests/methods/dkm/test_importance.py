"""Importance-weighted DKM: every path against the weighted naive reference, and what the
weighting is for (a lower importance-weighted error)."""

from dataclasses import replace

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.dkm import DKMConfig, SavedTensorMeter, absolute_tau, cluster, initial_centroids
from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm.reference import soft_kmeans

from .test_engine import CASES, rel, sixteen_bit_weight


def column_importance(cols: int, seed: int = 2) -> torch.Tensor:
    """A Hessian-diagonal-like profile: a few loud columns, most quiet, one dead (0)."""
    g = torch.Generator().manual_seed(seed)
    imp = torch.rand(cols, generator=g).pow(4) * 50 + 0.1
    imp[cols // 3] = 0.0
    return imp


def weighted_reference(w, grad, config, c0, tau, importance):
    w64 = w.double().requires_grad_(True)
    mass = pts.point_mass(importance.double().expand(w.shape), config)
    out, c, _ = soft_kmeans(pts.to_points(w64, config), c0.double(), tau, config.max_iter, config.epsilon, mass)
    (pts.from_points(out, w.shape) * grad.double()).sum().backward()
    return out.detach().reshape(w.shape), c.detach(), w64.grad


def run(w, grad, config, c0, tau, importance):
    w = w.clone().requires_grad_(True)
    out, c = cluster(w, config, centroids=c0, tau=tau, importance=importance)
    (out * grad).sum().backward()
    return out.detach(), c, w.grad


@pytest.mark.parametrize("shape,n_bits,group_size,cluster_dim", CASES)
def test_weighted_paths_match_weighted_reference(shape, n_bits, group_size, cluster_dim):
    w = sixteen_bit_weight(shape)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    imp = column_importance(shape[1])
    config = DKMConfig(n_bits=n_bits, group_size=group_size, cluster_dim=cluster_dim, max_iter=4, epsilon=0.0,
                       tau=0.05)
    c0, tau = initial_centroids(w, config, imp), absolute_tau(w, config)
    expected = weighted_reference(w, grad, config, c0, tau, imp)
    memories = ["naive", "unique"] + (["table"] if cluster_dim == 1 else [])
    for memory in memories:
        # naive runs the reference's math in fp32, whose rounding through sharp softmaxes reaches
        # ~1e-5 of the gradient by itself; the table paths compute their tables in float64
        tol = 5e-5 if memory == "naive" else 1e-5
        for marshal in (False, True) if memory != "naive" else (False,):
            got = run(w, grad, replace(config, memory=memory, marshal=marshal), c0, tau, imp)
            for what, a, b in zip(("output", "centroids", "gradient"), got, expected):
                assert rel(a, b) < tol, (memory, marshal, what, rel(a, b))


def test_weighted_fused_matches_weighted_reference():
    w = sixteen_bit_weight((24, 40))
    grad = torch.randn(24, 40, generator=torch.Generator().manual_seed(1))
    imp = column_importance(40)
    config = DKMConfig(n_bits=3, group_size=1, max_iter=3, epsilon=0.0, tau=0.05, memory="fused")
    c0, tau = initial_centroids(w, config, imp), absolute_tau(w, config)
    expected = weighted_reference(w, grad, config, c0, tau, imp)
    for what, a, b in zip(("output", "centroids", "gradient"), run(w, grad, config, c0, tau, imp), expected):
        assert rel(a, b) < 5e-5, (what, rel(a, b))


def test_uniform_importance_is_plain_dkm():
    w = sixteen_bit_weight((32, 48))
    grad = torch.randn(32, 48, generator=torch.Generator().manual_seed(1))
    config = DKMConfig(n_bits=3, group_size=8, max_iter=3, epsilon=0.0, tau=0.05)
    c0, tau = initial_centroids(w, config), absolute_tau(w, config)
    assert torch.equal(initial_centroids(w, config, torch.full((48,), 3.0)), c0)
    for memory in ("naive", "unique", "table"):
        plain = run(w, grad, replace(config, memory=memory), c0, tau, None)
        weighted = run(w, grad, replace(config, memory=memory), c0, tau, torch.full((48,), 3.0))
        for a, b in zip(weighted, plain):
            assert rel(a, b) < 1e-5, memory


def test_weighting_lowers_the_weighted_error():
    """Converged (sharp tau, many iterations), weighted DKM is weighted k-means: its hard palette
    has a lower importance-weighted squared error than plain DKM's, and a higher plain one."""
    w = sixteen_bit_weight((16, 256), seed=4)
    imp = column_importance(256)
    loud = imp > imp.median() * 4
    w[:, loud] *= 3  # the loud columns have their own spread of values, as in a real layer
    config = DKMConfig(n_bits=2, group_size=0, max_iter=60, epsilon=0.0, tau=1e-3)

    def errors(c):
        c = c.view(-1)
        err = (w.unsqueeze(-1) - c).pow(2).min(-1).values
        return float((err * imp).sum()), float(err.sum())

    _, c_plain = cluster(w, config)
    _, c_weighted = cluster(w, config, importance=imp)
    (wp, pp), (ww, pw) = errors(c_plain), errors(c_weighted)
    assert ww < 0.95 * wp and pw > pp


def test_dead_columns_still_read_their_values():
    # A value only zero-importance weights use carries no mass but is still a table row.
    w = sixteen_bit_weight((8, 16), seed=5)
    imp = torch.ones(16)
    imp[3] = 0.0
    w[:, 3] = 0.4  # a value no other weight has
    config = DKMConfig(n_bits=2, max_iter=2, epsilon=0.0, tau=0.05)
    c0 = initial_centroids(w, config, imp)
    outs = [cluster(w, replace(config, memory=m), centroids=c0, importance=imp)[0] for m in ("naive", "unique", "table")]
    assert float(outs[0][:, 3].abs().min()) > 0
    for o in outs[1:]:
        assert rel(o, outs[0]) < 1e-5


def test_table_path_saves_only_the_importance_vector():
    w = sixteen_bit_weight((128, 128)).requires_grad_(True)
    config = DKMConfig(n_bits=3, max_iter=4, epsilon=0.0, memory="table")
    imp = column_importance(128)
    with SavedTensorMeter() as meter:
        cluster(w, config, importance=imp)
    assert meter.stats.distinct_bytes <= config.n_clusters * 4 + 128 * 4


@pytest.mark.parametrize("importance,message", [
    (torch.ones(7), r"importance has shape \(7,\)"),
    (torch.ones(3, 8), r"importance has shape \(3, 8\)"),
    (-torch.ones(8), "importance must be finite, >= 0 and not all 0"),
    (torch.zeros(8), "importance must be finite, >= 0 and not all 0"),
    (torch.full((8,), float("nan")), "importance must be finite, >= 0 and not all 0"),
])
def test_bad_importance_names_the_module(importance, message):
    with pytest.raises(ConfigError, match=f"mlp.down_proj: {message}"):
        cluster(torch.randn(4, 8), DKMConfig(n_bits=2), name="mlp.down_proj", importance=importance)


def test_weighting_saves_no_more_for_backward_than_plain_dkm():
    # the weights enter the update through the points and a matrix-vector product, not as a
    # weighted copy of the [G, P, K] attention that autograd would keep
    w = sixteen_bit_weight((96, 64)).requires_grad_(True)
    imp = column_importance(64)
    config = DKMConfig(n_bits=3, group_size=1, max_iter=1, memory="naive")
    saved = []
    for importance in (None, imp):
        with SavedTensorMeter() as meter:
            cluster(w, config, importance=importance)
        saved.append(meter.stats.distinct_bytes)
    # at most the per-point weights (and their product with the points): far below a second attention
    assert saved[1] <= saved[0] + 2 * 96 * 64 * 4 < saved[0] + 96 * 64 * 8 * 4
