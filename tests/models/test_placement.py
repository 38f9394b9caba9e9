"""--device: resolved once, refused in one line where it cannot run, and every verb honours it."""

import pytest
import torch

from llmpress import api
from llmpress.errors import ConfigError
from llmpress.models.placement import place, resolve_device

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")


def test_cpu_and_auto_resolve_to_the_cpu_here():
    assert resolve_device(None) == resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_a_gpu_that_is_not_there_is_refused(name):
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "mps", "gpu", "cuda:x"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(name)


def test_place_moves_float_parameters_and_keeps_packed_dtypes(tiny_model):
    from llmpress.formats import uniform
    from llmpress.nn import CompressedLinear

    layer = CompressedLinear(uniform.quantize(torch.randn(8, 16), 3, 8))
    model = torch.nn.Sequential(tiny_model.model.embed_tokens, layer)
    assert place(model, "auto") is model
    assert layer.codes.dtype == torch.uint8 and layer.scale.dtype == torch.float16


def test_evaluate_reports_the_device_it_ran_on(tiny_dir, tmp_path):
    from tests.conftest import make_text

    (tmp_path / "text.txt").write_text("\n\n".join(make_text(200, seed) for seed in range(10)))
    r = api.evaluate(str(tiny_dir), corpus=f"file:{tmp_path}/text.txt", windows=1, seqlen=32, progress=False,
                     device="cpu")
    assert r["device"] == "cpu"
