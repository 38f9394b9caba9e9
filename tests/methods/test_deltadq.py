import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.methods.deltadq import (DAREConfig, DeltaDQConfig, MagnitudeConfig, account, compress_layer,
                                      group_dropout, keep_fraction, output_error, search_group_size)
from llmpress.methods.deltadq.baselines import bitdelta, dare, magnitude


def delta(rows=48, cols=96, seed=0):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 0.01


def test_group_dropout_keeps_rescaled_entries_and_zeros_the_rest():
    d = delta()
    fmt = group_dropout(d, 32, 8, seed=5, bits=16)
    dense = fmt.dequantize()
    kept = dense != 0
    assert kept.view(48, 3, 32).sum(dim=2).eq(8).all()
    assert torch.allclose(dense[kept], (d * 4)[kept], rtol=1e-3, atol=1e-6)  # rescaled by g/keep = 1/(1-p)
    assert torch.equal(fmt.dequantize(), group_dropout(d, 32, 8, seed=5, bits=16).dequantize())


def test_dropout_is_unbiased_over_seeds():
    d = delta(8, 64)
    mean = sum(group_dropout(d, 16, 4, seed=s, bits=16).dequantize() for s in range(400)) / 400
    assert (mean - d).abs().mean() < 0.25 * d.abs().mean()


def test_search_returns_the_candidate_with_least_output_error():
    d = delta()
    x = torch.randn(200, 96) * torch.linspace(0.1, 3, 96)  # uneven input scales: the gram matters
    gram = x.T @ x
    r = search_group_size(d, gram, 0.25, (8, 16, 32, 64), seed=1, bits=4, parts_bits=1)
    assert set(r.errors) == {8, 16, 32, 64} and r.errors[r.group] == min(r.errors.values())
    approx = r.fmt.dequantize()
    assert output_error(d, approx, gram) == pytest.approx(((x @ (d - approx).T) ** 2).sum().item(), rel=1e-3)


def test_unreachable_ratios_are_refused():
    with pytest.raises(ConfigError, match="cannot be reached"):
        DeltaDQConfig(ratio=2, bits=4)  # would keep 2 of every entry
    with pytest.raises(ConfigError, match="unreachable"):
        search_group_size(delta(), None, keep_fraction(512, 8), (8, 16), seed=0, bits=8, parts_bits=0)
    with pytest.raises(ConfigError):
        MagnitudeConfig(ratio=16, bits=16)
    with pytest.raises(ConfigError):
        DeltaDQConfig(ratio=0.5)
    assert DeltaDQConfig.from_json(DeltaDQConfig(bits=(2, 4)).to_json()) == DeltaDQConfig(bits=(2, 4))


@pytest.mark.parametrize("ratio", [8, 16, 32])
def test_every_method_stores_what_its_ratio_promises(ratio):
    d = delta(64, 128)
    fp16 = 2 * d.numel()
    fmt, row = compress_layer("l", d, "deltadq", DeltaDQConfig(ratio=ratio, bits=4, group_sizes=(16, 32)), None)
    values = fmt.nbytes - 8  # minus the (lo, step) grid
    assert values == -(-fmt.spec.n * 4 // 8) and fmt.spec.n == 64 * (128 // row["group"]) * row["keep"]
    assert abs(fp16 / values - ratio) / ratio < 0.1
    assert row["bytes"] == fmt.nbytes and 0 < row["rel_error"]
    dr = dare(d, ratio, 16, seed=0)
    assert dr.nbytes == 2 * dr.spec.n and abs(dr.spec.n / d.numel() - 1 / ratio) < 0.03
    m = magnitude(d, ratio, 4)
    assert m.nbytes <= fp16 / ratio + 8 + 2
    kept = m.dequantize() != 0
    assert kept.sum(dim=1).eq(m.spec.n // 64).all()
    for r in range(64):
        assert d[r].abs()[kept[r]].min() >= d[r].abs()[~kept[r]].max()
    b = bitdelta(d)
    assert 2 * d.numel() / b.nbytes > 15.9


def test_accounting_adds_every_stored_byte():
    d = delta()
    fmts = {"a": group_dropout(d, 16, 4, 0, 4, 1), "b": bitdelta(d)}
    dense = {"norm": torch.zeros(96, dtype=torch.float16)}
    a = account(fmts, dense, files={"x": 1000, "y": 24})
    assert a["linear_bytes"] == fmts["a"].nbytes + fmts["b"].nbytes
    assert a["tensor_bytes"] == a["linear_bytes"] + 192 and a["fp16_bytes"] == 2 * (2 * d.numel() + 96)
    assert a["directory_ratio"] == a["fp16_bytes"] / 1024


def test_deltadq_beats_dare_when_the_delta_is_coherent():
    # A low-rank delta (what fine-tuning produces) read by correlated inputs: group-wise dropout
    # with quantized values keeps many more entries than DARE in float16 at the same bytes.
    g = torch.Generator().manual_seed(0)
    d = (torch.randn(64, 4, generator=g) @ torch.randn(4, 128, generator=g)) * 0.01
    x = torch.randn(256, 128, generator=g)
    gram = x.T @ x
    _, dq = compress_layer("l", d, "deltadq", DeltaDQConfig(ratio=32, bits=(2, 4)), gram)
    _, da = compress_layer("l", d, "dare", DAREConfig(ratio=32), gram)
    assert dq["rel_error"] < da["rel_error"]


@pytest.mark.parametrize("kwargs,match", [({"distill_steps": -1}, "distill_steps"), ({"distill_batch": 0}, "distill_batch"),
                                          ({"distill_lr": 0.0}, "distill_lr")])
def test_bad_bitdelta_distillation_settings(kwargs, match):
    from llmpress.methods.deltadq import BitDeltaConfig

    with pytest.raises(ConfigError, match=match):
        BitDeltaConfig(**kwargs)
    assert BitDeltaConfig.from_json(BitDeltaConfig(distill_steps=5).to_json()) == BitDeltaConfig(distill_steps=5)


def test_unbiased_deltadq_keeps_the_projection_of_the_delta():
    # The least-squares grid shrinks what it codes (<D^, D> = ||D^||^2 < ||D||^2); the unbiased
    # one keeps <D^, D> = ||D||^2, with no dropout (keep all at 16x with 1-bit codes) exactly.
    g = torch.Generator().manual_seed(0)
    d = torch.distributions.StudentT(3.0).sample((64, 128)) * 0.01
    shrunk, _ = compress_layer("l", d, "deltadq", DeltaDQConfig(ratio=16, bits=1, unbiased=False), None)
    kept, _ = compress_layer("l", d, "deltadq", DeltaDQConfig(ratio=16, bits=1, unbiased=True), None)
    energy = float((d * d).sum())
    assert float((shrunk.dequantize() * d).sum()) < 0.8 * energy
    assert float((kept.dequantize() * d).sum()) == pytest.approx(energy, rel=1e-4)
    # with dropout (32x: half the entries at 1 bit) the kept values' projection is what is preserved
    dropped, _ = compress_layer("l", d, "deltadq", DeltaDQConfig(ratio=32, bits=1, unbiased=True), None)
    v = dropped.kept_values()
    row, col = dropped.positions()
    kept_v = d[row, col] * 2  # rescaled by 1 / (1 - p)
    assert float((v * kept_v).sum()) == pytest.approx(float((kept_v * kept_v).sum()), rel=1e-4)
    assert DeltaDQConfig().unbiased is True  # the default
    assert DeltaDQConfig.from_dict(DeltaDQConfig(unbiased=False).to_dict()).unbiased is False
