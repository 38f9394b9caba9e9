"""Every memory-saving DKM path against the naive reference, on 16-bit weights.

The reference is the naive soft k-means evaluated in float64: its own fp32 rounding reaches
~1e-5 in the gradient through several sharp softmax iterations, so float64 is the truth each
fp32 path must match to a relative 1e-5.
"""

from dataclasses import replace

import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.dkm import DKMConfig, SavedTensorMeter, absolute_tau, cluster, initial_centroids
from llmpress.methods.dkm import points as pts
from llmpress.methods.dkm.reference import soft_kmeans

CASES = [  # (shape, n_bits, group_size, cluster_dim)
    ((32, 48), 3, 0, 1),
    ((32, 48), 2, 8, 1),
    ((64, 64), 8, 0, 1),
    ((48, 40), 1, 12, 1),
    ((16, 24), 4, 4, 2),
    ((24, 36), 2, 6, 3),
    ((8, 64), 3, 0, 4),
]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def sixteen_bit_weight(shape, dtype=torch.bfloat16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * 0.05).to(dtype).float()


def reference(w: torch.Tensor, grad: torch.Tensor, config: DKMConfig, c0: torch.Tensor, tau: float):
    w64 = w.double().requires_grad_(True)
    out, c, _ = soft_kmeans(pts.to_points(w64, config), c0.double(), tau, config.max_iter, config.epsilon)
    out = pts.from_points(out, w.shape)
    (out * grad.double()).sum().backward()
    return out.detach(), c.detach(), w64.grad


def run(w: torch.Tensor, grad: torch.Tensor, config: DKMConfig, c0: torch.Tensor, tau: float):
    w = w.clone().requires_grad_(True)
    out, c = cluster(w, config, centroids=c0, tau=tau)
    (out * grad).sum().backward()
    return out.detach(), c, w.grad


def modes(cluster_dim: int):
    yield "unique"
    if cluster_dim == 1:
        yield "table"


@pytest.mark.parametrize("shape,n_bits,group_size,cluster_dim", CASES)
def test_paths_match_reference(shape, n_bits, group_size, cluster_dim):
    w = sixteen_bit_weight(shape)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    config = DKMConfig(n_bits=n_bits, group_size=group_size, cluster_dim=cluster_dim, max_iter=4, epsilon=0.0,
                       tau=0.05)
    c0, tau = initial_centroids(w, config), absolute_tau(w, config)
    expected = reference(w, grad, config, c0, tau)
    # Marshaling changes where saved tensors live, not the arithmetic: bit-identical to naive fp32.
    naive = run(w, grad, replace(config, memory="naive"), c0, tau)
    for a, b in zip(run(w, grad, replace(config, memory="naive", marshal=True), c0, tau), naive):
        assert torch.equal(a, b)
    for memory in modes(cluster_dim):
        for marshal in (False, True):
            got = run(w, grad, replace(config, memory=memory, marshal=marshal), c0, tau)
            for what, a, b in zip(("output", "centroids", "gradient"), got, expected):
                assert a.dtype == torch.float32
                assert rel(a, b) < 1e-5, (memory, marshal, what, rel(a, b))


@pytest.mark.parametrize("shape,n_bits,group_size", [((32, 48), 3, 1), ((48, 40), 2, 4), ((24, 64), 3, 0)])
def test_fused_matches_reference(shape, n_bits, group_size):
    # Three shapes: the first compiles a static graph, the others the shared dynamic one.
    w = sixteen_bit_weight(shape)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    config = DKMConfig(n_bits=n_bits, group_size=group_size, max_iter=3, epsilon=0.0, tau=0.05, memory="fused")
    c0, tau = initial_centroids(w, config), absolute_tau(w, config)
    expected = reference(w, grad, replace(config, memory="naive"), c0, tau)
    for what, a, b in zip(("output", "centroids", "gradient"), run(w, grad, config, c0, tau), expected):
        assert rel(a, b) < 1e-5, (what, rel(a, b))


def test_auto_picks_fused_for_small_groups():
    assert DKMConfig(group_size=1).implementation == "fused"
    assert DKMConfig(group_size=0).implementation == "table"
    assert DKMConfig(group_size=64).implementation == "table"
    assert DKMConfig(group_size=1, cluster_dim=2).implementation == "unique"


def test_sixteen_bit_dtypes_use_their_own_patterns():
    for dtype in (torch.float16, torch.bfloat16):
        w32 = sixteen_bit_weight((32, 32), dtype=dtype)
        grad = torch.randn(32, 32)
        config = DKMConfig(n_bits=3, max_iter=3, epsilon=0.0, memory="table", value_dtype="float16")
        c0, tau = initial_centroids(w32, config), absolute_tau(w32, config)
        w16 = w32.to(dtype).requires_grad_(True)
        out16, c16 = cluster(w16, config, centroids=c0, tau=tau)
        (out16.float() * grad).sum().backward()
        out32, c32, g32 = run(w32, grad, replace(config, memory="naive"), c0, tau)
        assert out16.dtype == dtype and w16.grad.dtype == dtype
        assert rel(c16, c32) < 1e-5
        assert rel(out16.float(), out32) < 4e-3  # the output itself is rounded to the weight's dtype
        assert rel(w16.grad.float(), g32) < 1e-2  # bf16/fp16 gradient storage rounds at ~1e-3


def test_fp32_master_clusters_its_sixteen_bit_view():
    """memory='table' on fp32 weights = naive DKM on the weights rounded to value_dtype, with the
    gradient passed straight through the rounding."""
    w = torch.randn(32, 40, generator=torch.Generator().manual_seed(3)) * 0.05  # not 16-bit exact
    grad = torch.randn(32, 40)
    for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        config = DKMConfig(n_bits=3, max_iter=3, epsilon=0.0, value_dtype=name)
        rounded = w.to(dtype).float()
        c0, tau = initial_centroids(rounded, config), absolute_tau(rounded, config)
        got = run(w, grad, config, c0, tau)
        expected = reference(rounded, grad, config, c0, tau)
        for a, b in zip(got, expected):
            assert rel(a, b) < 1e-5


def test_table_path_saves_no_per_weight_state():
    w = sixteen_bit_weight((128, 128)).requires_grad_(True)
    config = DKMConfig(n_bits=3, max_iter=4, epsilon=0.0)
    c0 = initial_centroids(w, config)
    saved = {}
    for memory in ("naive", "unique", "table"):
        with SavedTensorMeter() as meter:
            cluster(w, replace(config, memory=memory), centroids=c0)
        saved[memory] = meter.stats
    n, k = w.numel(), config.n_clusters
    assert saved["naive"].distinct_bytes >= config.max_iter * 2 * n * k * 4  # distances + attention per step
    assert saved["unique"].distinct_bytes < 3 * n + 65536 * 4 + 1024        # int16 index list + value table
    assert saved["table"].distinct_bytes <= k * 4                            # the starting centroids
    assert saved["table"].parameters >= 1                                    # the weight, by reference


def test_marshal_moves_each_storage_once():
    from llmpress.methods.dkm import marshal

    w = sixteen_bit_weight((64, 64)).requires_grad_(True)
    config = DKMConfig(n_bits=2, max_iter=3, epsilon=0.0, memory="naive")
    with SavedTensorMeter() as meter:
        out, _ = cluster(w, config, centroids=initial_centroids(w, config))
    with marshal("cpu") as m:
        out2, _ = cluster(w, config, centroids=initial_centroids(w, config))
    assert m.stats.packed == meter.stats.packed and m.stats.packed_bytes == meter.stats.packed_bytes
    assert m.stats.referenced > 0                               # A^T reuses A's moved storage
    assert m.stats.moved_bytes == meter.stats.distinct_bytes < meter.stats.packed_bytes
    g = torch.randn(64, 64)
    (grad_a,) = torch.autograd.grad((out * g).sum(), w)
    (grad_b,) = torch.autograd.grad((out2 * g).sum(), w)
    assert torch.equal(grad_a, grad_b)


def test_early_stop_and_warm_start():
    w = sixteen_bit_weight((32, 32))
    config = DKMConfig(n_bits=2, max_iter=50, epsilon=1e-7)
    _, c1 = cluster(w, config)
    out_a, c2 = cluster(w, config, centroids=c1)
    # Warm-started from a fixed point, the centroids barely move and every path agrees.
    assert rel(c2, c1) < 1e-4
    for memory in ("naive", "unique"):
        out_b, c3 = cluster(w, replace(config, memory=memory), centroids=c1)
        assert rel(out_b, out_a) < 1e-5 and rel(c3, c2) < 1e-5


def test_initial_centroids_are_seeded():
    w = sixteen_bit_weight((64, 64))
    a = initial_centroids(w, DKMConfig(n_bits=3, seed=1))
    assert torch.equal(a, initial_centroids(w, DKMConfig(n_bits=3, seed=1)))
    assert a.shape == (1, 8, 1) and w.min() <= a.min() and a.max() <= w.max()
    # Lloyd-refined k-means++ beats a uniform grid over the range on the k-means objective.
    grid = torch.linspace(float(w.min()), float(w.max()), 8).view(1, 8, 1)
    sse = lambda c: float((w.view(-1, 1) - c.view(1, -1)).pow(2).min(1).values.sum())  # noqa: E731
    assert sse(a) < sse(grid)


def test_exact_1d_kmeans_is_optimal():
    import itertools

    from llmpress.methods.dkm.init import kmeans_1d_exact

    def sse(x, n, c):
        return float((n * (x.view(-1, 1) - c.view(1, -1)).pow(2).min(1).values).sum())

    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        v, k = int(torch.randint(4, 10, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
        x = torch.randn(v, generator=g).sort().values.double()
        n = torch.randint(1, 5, (v,), generator=g).double()
        got = sse(x, n, kmeans_1d_exact(x.view(1, v, 1), n.view(1, v), k).view(-1).double())
        best = float("inf")  # every split of the sorted values into k contiguous runs
        for cuts in itertools.combinations(range(1, v), k - 1):
            b = [0, *cuts, v]
            c = torch.stack([(n[i:j] * x[i:j]).sum() / n[i:j].sum() for i, j in zip(b[:-1], b[1:])])
            best = min(best, sse(x, n, c))
        assert abs(got - best) <= 1e-9 * (1 + best)
    w = sixteen_bit_weight((64, 64))
    c1d = initial_centroids(w, DKMConfig(n_bits=3, init="kmeans1d"))
    cpp = initial_centroids(w, DKMConfig(n_bits=3))
    assert sse(w.view(-1).double(), torch.ones(w.numel()).double(), c1d.view(-1).double()) <= \
        sse(w.view(-1).double(), torch.ones(w.numel()).double(), cpp.view(-1).double()) + 1e-12


@pytest.mark.parametrize("shape,settings,message", [
    ((8, 8), {"group_size": 3}, "group_size 3 does not divide"),
    ((8, 9), {"cluster_dim": 2, "memory": "naive"}, "cluster_dim 2 does not divide"),
    ((2, 3), {"n_bits": 3}, "a group holds 6 points, fewer than the 8 centroids"),
])
def test_bad_shapes_name_the_module(shape, settings, message):
    with pytest.raises(ConfigError, match=f"layers.3.q_proj: {message}"):
        cluster(torch.randn(*shape), DKMConfig(**settings), name="layers.3.q_proj")


def test_non_finite_weights_name_the_module():
    for bad in (float("nan"), float("inf")):
        w = torch.randn(8, 8)
        w[2, 3] = bad
        with pytest.raises(ConfigError, match="mlp.up_proj: weight contains NaN or Inf"):
            cluster(w, DKMConfig(n_bits=2), name="mlp.up_proj")


def test_table_path_refuses_weights_beyond_float16():
    with pytest.raises(ConfigError, match="value_dtype='bfloat16'"):
        cluster(torch.full((8, 8), 1e5) * torch.randn(8, 8), DKMConfig(n_bits=2), name="big")
