import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS, dropout_masks, separate_codes, sign_delta
from llmpress.formats.sparse_delta import from_kept, pack_wide, unpack_wide


@pytest.mark.parametrize("cols,group,keep", [(96, 16, 4), (100, 16, 5), (96, 96, 1), (70, 32, 32)])
def test_group_mask_keeps_exactly_round_of_each_group(cols, group, keep):
    pos = dropout_masks.group_positions(7, cols, group, keep, seed=3)
    assert pos.shape == (7, dropout_masks.group_kept_count(cols, group, keep))
    for row in pos:
        assert torch.equal(row, row.unique())  # ascending, no repeats
        counts = torch.bincount(row // group, minlength=-(-cols // group))
        for gi, c in enumerate(counts.tolist()):
            width = min(group, cols - gi * group)
            assert c == (keep if width == group else round(keep * width / group))


def test_same_seed_same_mask_other_seed_other_mask():
    a = dropout_masks.group_positions(8, 64, 16, 4, seed=11)
    assert torch.equal(a, dropout_masks.group_positions(8, 64, 16, 4, seed=11))
    assert not torch.equal(a, dropout_masks.group_positions(8, 64, 16, 4, seed=12))
    m = dropout_masks.bernoulli_mask(50, 60, 0.75, seed=1)
    assert torch.equal(m, dropout_masks.bernoulli_mask(50, 60, 0.75, seed=1))
    assert abs(m.float().mean().item() - 0.25) < 0.03


@pytest.mark.parametrize("bits,parts_bits", [(4, 1), (4, 2), (3, 3), (8, 3), (2, 0), (1, 1)])
def test_separate_quantization_rebuilds_the_codes_exactly(bits, parts_bits):
    codes = torch.randint(0, 1 << bits, (1001,), generator=torch.Generator().manual_seed(bits))
    membership, low = separate_codes.pack_split(codes, bits, parts_bits)
    assert membership.numel() == -(-1001 * parts_bits // 8) and low.numel() == -(-1001 * (bits - parts_bits) // 8)
    part, lowv = separate_codes.split(codes, bits, parts_bits)
    assert int(part.max()) < 1 << parts_bits and int(lowv.max()) < 1 << (bits - parts_bits)
    assert torch.equal(separate_codes.unpack_split(membership, low, 1001, bits, parts_bits), codes)


def test_uniform_grid_error_is_at_most_half_a_step_inside_the_clip():
    v = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    lo, step = separate_codes.uniform_grid(v, 4)
    back = separate_codes.decode(separate_codes.encode(v, 4, lo, step), lo, step)
    inside = (v >= lo) & (v <= lo + 15 * step)
    assert (back - v)[inside].abs().max() <= step / 2 + 1e-6
    assert ((back - v) ** 2).mean() < ((separate_codes.decode(separate_codes.encode(
        v, 4, -v.abs().max().item(), 2 * v.abs().max().item() / 15), -v.abs().max().item(),
        2 * v.abs().max().item() / 15) - v) ** 2).mean() + 1e-9  # the clip search never loses to no clip


def _scan_best_error(v: torch.Tensor, bits: int) -> float:
    levels, amax = (1 << bits) - 1, float(v.abs().max())
    errs = []
    for clip in torch.linspace(0.002, 1.0, 500).tolist():
        lo, step = -clip * amax, 2 * clip * amax / levels
        errs.append(float(((separate_codes.decode(separate_codes.encode(v, bits, lo, step), lo, step) - v) ** 2).sum()))
    return min(errs)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_uniform_grid_matches_a_dense_clip_scan_on_heavy_tailed_values(bits):
    # Fine-tuning deltas are heavy-tailed: the best 1-2 bit clip lies far below max|v|.
    torch.manual_seed(bits)
    v = torch.distributions.StudentT(3.0).sample((50_000,))
    lo, step = separate_codes.uniform_grid(v, bits)
    err = float(((separate_codes.decode(separate_codes.encode(v, bits, lo, step), lo, step) - v) ** 2).sum())
    assert err <= 1.01 * _scan_best_error(v, bits)


def test_one_bit_grid_is_plus_minus_mean_magnitude():
    v = torch.distributions.Laplace(0.0, 1.0).sample((20_000,))
    lo, step = separate_codes.uniform_grid(v, 1)
    assert lo + step == pytest.approx(-lo) and -lo == pytest.approx(float(v.abs().mean()), rel=1e-4)


def test_wide_indices_round_trip():
    v = torch.randint(0, 1536, (333,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(unpack_wide(pack_wide(v, 11), 11, 333), v)


def test_sparse_delta_meta_round_trip_and_bytes():
    d = torch.randn(6, 40)
    row, col = torch.tensor([0, 0, 5]), torch.tensor([1, 39, 7])
    fmt = from_kept((6, 40), row, col, d[row, col], 4, 1, mask="indices")
    empty = FORMATS[fmt.FORMAT].from_meta(fmt.meta())
    assert {k: (v.shape, v.dtype) for k, v in empty.tensors().items()} == \
        {k: (v.shape, v.dtype) for k, v in fmt.tensors().items()}
    # 3 entries: 3 membership bits (1 byte), 9 low bits (2 bytes), grid 8 bytes, 3 x 6-bit indices (3 bytes)
    assert fmt.nbytes == 1 + 2 + 8 + 3
    with pytest.raises(ConfigError):
        from_kept((6, 40), row, col, d[row, col], 9, 1)


def test_bitdelta_is_sign_times_mean_abs():
    d = torch.randn(9, 17)
    fmt = sign_delta.quantize(d)
    assert torch.allclose(fmt.dequantize(), torch.sign(d) * d.abs().mean())
    assert fmt.nbytes == -(-9 * 17 // 8) + 4


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_unbiased_grid_keeps_the_projection_at_the_price_of_r_over_1_minus_r(bits):
    torch.manual_seed(bits)
    v = torch.distributions.Laplace(0.0, 1.0).sample((20_000,))
    lo, step = separate_codes.uniform_grid(v, bits)
    codes = separate_codes.encode(v, bits, lo, step)
    decoded = {False: separate_codes.decode(codes, lo, step),
               True: separate_codes.decode(codes, *separate_codes.unbiased_grid(v, codes, lo, step))}
    energy = float((v * v).sum())
    assert float((decoded[False] * v).sum()) < 0.95 * energy  # least squares shrinks
    assert float((decoded[True] * v).sum()) == pytest.approx(energy, rel=1e-4)
    r = float(((decoded[False] - v) ** 2).sum()) / energy
    assert float(((decoded[True] - v) ** 2).sum()) / energy == pytest.approx(r / (1 - r), rel=1e-3)
