import pytest
import torch

from llmpress.errors import ConfigError
from llmpress.formats import FORMATS
from llmpress.formats.palette import PaletteSpec, PaletteTensor, palettize


def test_palettize_picks_the_nearest_entry_and_dequantizes_from_the_table():
    g = torch.Generator().manual_seed(0)
    for rows, cols, groups, d, k in [(12, 20, 1, 1, 8), (12, 20, 3, 2, 4), (8, 9, 2, 3, 2), (16, 16, 16, 1, 256)]:
        w = torch.randn(rows, cols, generator=g)
        lut = torch.randn(groups, k, d, generator=g)
        p = palettize(w, lut, group_size=rows // groups if groups > 1 else 0)
        lut16 = lut.half().float()
        pts = w.reshape(groups, -1, d)
        dist = (pts.unsqueeze(2) - lut16.unsqueeze(1)).pow(2).sum(-1)
        assert torch.equal(p.int_indices(), dist.argmin(-1))
        expected = torch.gather(lut16, 1, dist.argmin(-1).unsqueeze(-1).expand(-1, -1, d)).reshape(rows, cols)
        assert torch.equal(p.dequantize(), expected)
        bits = k.bit_length() - 1
        assert p.nbytes == groups * k * d * 2 + (rows * cols // d * bits + 7) // 8


def test_meta_round_trip_through_the_registry():
    p = palettize(torch.randn(8, 12), torch.randn(2, 8, 2), group_size=4)
    empty = FORMATS[p.meta()["format"]].from_meta(p.meta())
    assert isinstance(empty, PaletteTensor) and empty.spec == p.spec
    assert {k: v.shape for k, v in empty.tensors().items()} == {k: v.shape for k, v in p.tensors().items()}


@pytest.mark.parametrize("kwargs,message", [
    ({"shape": (8, 8), "bits": 0}, "bits must be in 1..8"),
    ({"shape": (8, 8), "bits": 3, "group_size": 3}, "group_size 3 must divide"),
    ({"shape": (8, 9), "bits": 3, "cluster_dim": 2}, "cluster_dim 2 must divide"),
])
def test_bad_specs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PaletteSpec(**kwargs)


def test_table_must_have_a_power_of_two_entries():
    with pytest.raises(ConfigError, match="2\\*\\*bits entries"):
        palettize(torch.randn(4, 4), torch.randn(1, 3, 1))
