import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmpress.methods.dkm import DKMConfig, DKMModelConfig, cluster
from llmpress.models.dkm import prepare
from llmpress.nn.dkm import DKMEmbedding, DKMLinear, DKMTiedHead


def bf16_linear(i=48, o=32, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(i, o)
    with torch.no_grad():
        lin.weight.copy_(lin.weight.to(torch.bfloat16).float())
    return lin


def test_linear_forward_is_the_clustered_weight():
    lin = bf16_linear()
    config = DKMConfig(n_bits=3, max_iter=3)
    m = DKMLinear(lin, config, name="q")
    assert m.weight is lin.weight and m.centroids.shape == (1, 8, 1)
    x = torch.randn(2, 5, 48)
    w, _ = cluster(lin.weight, config, m.centroids.clone(), float(m.tau))
    torch.testing.assert_close(m(x), F.linear(x, w, lin.bias), rtol=0, atol=0)
    # Soft clustering pulls every weight towards its centroids.
    gap = lambda t: (t.detach().reshape(-1, 1) - m.centroids.reshape(1, -1)).abs().min(1).values.mean()  # noqa: E731
    assert gap(w) < 0.5 * gap(lin.weight)


def test_training_moves_centroids_and_reaches_the_weight():
    m = DKMLinear(bf16_linear(), DKMConfig(n_bits=2, max_iter=2), name="q")
    before = m.centroids.clone()
    opt = torch.optim.SGD(m.parameters(), lr=1e-2)
    x, y = torch.randn(16, 48), torch.randn(16, 32)
    losses = []
    for _ in range(5):
        loss = F.mse_loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss))
    assert not torch.equal(before, m.centroids)  # warm start advanced
    assert losses[-1] < losses[0]


def test_eval_reuses_the_clustered_weight_until_it_changes():
    m = DKMLinear(bf16_linear(), DKMConfig(n_bits=2), name="q").eval()
    with torch.no_grad():
        a = m.clustered_weight()
        assert m.clustered_weight() is a
        m.weight.add_(0.01)
        assert m.clustered_weight() is not a


def test_prepare_tiny_model(tiny_model):
    config = DKMModelConfig(linear=DKMConfig(n_bits=3, max_iter=2), embedding=DKMConfig(n_bits=8, max_iter=2),
                            overrides={"model.layers.1.mlp.down_proj": None})
    names = prepare(tiny_model, config)
    assert "model.embed_tokens" in names and "model.layers.1.mlp.down_proj" not in names
    assert isinstance(tiny_model.model.embed_tokens, DKMEmbedding)
    assert isinstance(tiny_model.model.layers[0].self_attn.q_proj, DKMLinear)
    assert isinstance(tiny_model.lm_head, DKMTiedHead)
    assert tiny_model.model.embed_tokens.centroids.shape == (1, 256, 1)
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 12))
    tiny_model.train()
    out = tiny_model(input_ids=ids, labels=ids)
    out.loss.backward()
    emb = tiny_model.model.embed_tokens
    assert emb.weight.grad is not None and torch.isfinite(emb.weight.grad).all()
    # The tied head read the embedding's clustered weight of this step, not the raw weight.
    tiny_model.eval()
    with torch.no_grad():
        h = tiny_model.model(input_ids=ids).last_hidden_state
        logits = tiny_model(input_ids=ids).logits
    torch.testing.assert_close(logits, h @ emb.clustered_weight().T)


def test_finalize_to_palettes_and_back_from_a_checkpoint(tiny_model, tiny_tokenizer, tmp_path):
    import pytest

    from llmpress import checkpoint
    from llmpress.errors import ConfigError
    from llmpress.models.dkm import finalize
    from llmpress.models.storage import storage_report
    from llmpress.nn import CompressedEmbedding, CompressedLinear

    prepare(tiny_model, DKMModelConfig(linear=DKMConfig(n_bits=3, max_iter=2), embedding=DKMConfig(n_bits=4)))
    with pytest.raises(ConfigError, match="before any training step"):
        finalize(tiny_model)
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 12))
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model.train()
    for _ in range(2):
        opt.zero_grad()
        tiny_model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    q = tiny_model.model.layers[0].self_attn.q_proj
    centroids, weight = q.centroids.clone(), q.weight.detach().clone()
    finalize(tiny_model)
    tiny_model.eval()
    q = tiny_model.model.layers[0].self_attn.q_proj
    assert isinstance(q, CompressedLinear) and isinstance(tiny_model.model.embed_tokens, CompressedEmbedding)
    # Every weight became its nearest (float16) centroid.
    lut = centroids.view(-1).half().float()
    nearest = lut[(weight.view(-1, 1) - lut.view(1, -1)).abs().argmin(1)].view(weight.shape)
    assert torch.equal(q.dequantize(), nearest)
    head, emb = tiny_model.lm_head, tiny_model.model.embed_tokens
    assert head.lut is emb.lut and head.indices is emb.indices
    report = storage_report(tiny_model)
    assert 4 < report["groups"]["embedding"]["bits_per_weight"] < 4.1
    assert report["groups"]["lm_head"]["bytes"] == 0
    with torch.no_grad():
        expected = tiny_model(input_ids=ids).logits
    path = checkpoint.save(tiny_model, tmp_path / "dkm", tokenizer=tiny_tokenizer, method="dkm")
    loaded = checkpoint.load(path).model
    assert loaded.lm_head.lut is loaded.model.embed_tokens.lut
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)


def test_prepare_starts_from_a_post_training_palette(tiny_model):
    import copy

    import pytest

    from llmpress.errors import ConfigError
    from llmpress.methods.kmeans import KMeansConfig
    from llmpress.models.compress import compress_model
    from llmpress.models.dkm import palette_tables

    palettized = copy.deepcopy(tiny_model)
    compress_model(palettized, "kmeans", KMeansConfig(bits=2, group_size=1), progress=False)
    tables = palette_tables(palettized)
    q = "model.layers.0.self_attn.q_proj"
    assert tables[q].shape == (tiny_model.get_submodule(q).out_features, 4, 1)
    # A per-tensor config cannot start from per-row tables: the error names the layer and the shapes.
    with pytest.raises(ConfigError, match="q_proj: starting centroids have shape"):
        prepare(copy.deepcopy(tiny_model), DKMModelConfig(linear=DKMConfig(n_bits=2), embedding=None),
                centroids=tables)
    config = DKMConfig(n_bits=2, group_size=1, max_iter=1, tau=1e-6, memory="naive")
    prepare(tiny_model, DKMModelConfig(linear=config, embedding=None), centroids=tables)
    m = tiny_model.get_submodule(q)
    assert torch.equal(m.centroids, tables[q])
    # At a near-zero temperature the soft clustering is the palette's nearest-centroid assignment:
    # the model starts where the post-training palette ends (one soft k-means step moves the
    # centroids to the means of their weights, which is where k-means left them).
    with torch.no_grad():
        expected = palettized.get_submodule(q).dequantize()
        assert torch.allclose(m.clustered_weight(), expected, atol=1e-3)


def test_hessian_importance_is_the_sum_of_squared_inputs(tiny_model):
    from llmpress.models.dkm import hessian_importance

    ids = torch.randint(0, 100, (3, 10), generator=torch.Generator().manual_seed(0))
    seen = {}
    names = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    handles = [tiny_model.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: seen.setdefault(n, []).append(a[0].reshape(-1, a[0].shape[-1]))) for n in names]
    with torch.no_grad():
        tiny_model(input_ids=ids)
    for h in handles:
        h.remove()
    imp = hessian_importance(tiny_model, ids, batch_size=2)  # batching must not change the sums
    assert set(names) <= set(imp) and all(v.dim() == 1 for v in imp.values())
    for n in names:
        x = torch.cat(seen[n]).double()
        torch.testing.assert_close(imp[n].double(), x.pow(2).sum(0), rtol=1e-5, atol=0)


def test_prepare_with_hessian_sensitivity(tiny_model):
    import pytest

    from llmpress.errors import ConfigError

    config = DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=1), embedding=None, sensitivity="hessian")
    assert DKMModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="needs each linear's importance"):
        prepare(tiny_model, config)
    with pytest.raises(ConfigError, match="sensitivity='none'"):
        prepare(tiny_model, DKMModelConfig(embedding=None), importance={"x": torch.ones(3)})
    with pytest.raises(ConfigError, match="no importance for"):
        prepare(tiny_model, config, importance={"model.layers.0.self_attn.q_proj": torch.ones(64)})
    from llmpress.models.layers import compressible_linears

    importance = {n: torch.rand(m.in_features) + 0.1 for n, m in compressible_linears(tiny_model)}
    names = prepare(tiny_model, config, importance=importance)
    q = tiny_model.get_submodule(names[0])
    assert isinstance(q, DKMLinear) and torch.equal(q.importance, importance[names[0]])
    assert "importance" not in q.state_dict()  # calibration data, not part of the model


def test_anneal_goes_geometrically_from_tau_to_tau_final():
    lin = bf16_linear()
    var = float(lin.weight.float().var())
    m = DKMLinear(lin, DKMConfig(n_bits=2, tau=1e-2, tau_final=1e-4), name="q")
    for progress, tau in ((0.0, 1e-2), (0.5, 1e-3), (1.0, 1e-4), (2.0, 1e-4)):
        m.anneal(progress)
        assert float(m.tau) == pytest.approx(tau * var, rel=1e-9)
    fixed = DKMLinear(bf16_linear(), DKMConfig(n_bits=2, tau=1e-2), name="q")
    start = float(fixed.tau)
    fixed.anneal(0.7)
    assert float(fixed.tau) == start


def test_eval_cache_follows_the_temperature():
    m = DKMLinear(bf16_linear(), DKMConfig(n_bits=2, tau=1.0, tau_final=1e-6), name="q").eval()
    with torch.no_grad():
        soft = m.clustered_weight()
        m.anneal(1.0)
        hard = m.clustered_weight()
    assert hard is not soft and not torch.equal(hard, soft)


def test_hard_temperature_gives_a_cluster_one_gradient_and_a_soft_one_many():
    # Weights sitting on their centroids (a palette's decoded weights): under a hard temperature
    # each weight reaches the output only through its centroid's mean, so all weights of a
    # cluster get the same gradient and none can move to another cluster; a soft one tells them apart.
    torch.manual_seed(0)
    table = torch.tensor([-1.0, -0.3, 0.3, 1.0])
    idx = torch.randint(0, 4, (4, 64))

    def grads(tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        lin = torch.nn.Linear(64, 4, bias=False)
        with torch.no_grad():
            lin.weight.copy_(table[idx])
        config = DKMConfig(n_bits=2, group_size=1, max_iter=1, tau=tau, tau_relative=False, memory="naive")
        m = DKMLinear(lin, config, name="q", centroids=table.repeat(4, 1).unsqueeze(-1))
        m(torch.randn(32, 64)).pow(2).sum().backward()
        return m.weight.grad, idx

    def spread(g, idx) -> float:  # largest within-cluster spread of the gradient, relative to its scale
        within = max(float(g[r][idx[r] == k].std()) for r in range(4) for k in range(4) if (idx[r] == k).sum() > 1)
        return within / float(g.abs().mean())

    assert spread(*grads(1e-4)) < 1e-5
    assert spread(*grads(0.1)) > 0.1
