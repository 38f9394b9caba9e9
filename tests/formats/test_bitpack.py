import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import bitpack


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 2, 7, 8, 9, 15, 17, 63, 1000, 1001, 4099])
def test_round_trip_every_width_and_awkward_lengths(bits, n):
    g = torch.Generator().manual_seed(bits * 10007 + n)
    values = torch.randint(0, 1 << bits, (n,), generator=g, dtype=torch.int64)
    packed = bitpack.pack(values, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == (n * bits + 7) // 8 == bitpack.packed_nbytes(n, bits)
    assert torch.equal(bitpack.unpack(packed, bits, n).to(torch.int64), values)


def test_layout_is_lsb_first():
    # 3-bit values 5 (101), 3 (011), 7 (111): stream bits 101 110 111 (LSB first per value)
    packed = bitpack.pack(torch.tensor([5, 3, 7]), 3)
    assert packed.tolist() == [0b11011101, 0b1]


def test_extreme_values_and_multidimensional_input():
    for bits in range(1, 9):
        v = torch.tensor([[0, (1 << bits) - 1], [(1 << bits) - 1, 0]])
        assert torch.equal(bitpack.unpack(bitpack.pack(v, bits), bits, 4).view(2, 2).long(), v)


@pytest.mark.parametrize("bits", [0, 9, 2.5])
def test_bad_width(bits):
    with pytest.raises(ConfigError, match="bit width"):
        bitpack.pack(torch.tensor([0]), bits)


def test_out_of_range_values_rejected():
    with pytest.raises(ConfigError, match="lie in"):
        bitpack.pack(torch.tensor([0, 8]), 3)
    with pytest.raises(ConfigError, match="lie in"):
        bitpack.pack(torch.tensor([-1]), 3)


def test_short_stream_rejected():
    with pytest.raises(ConfigError, match="need"):
        bitpack.unpack(torch.zeros(2, dtype=torch.uint8), 3, 10)
