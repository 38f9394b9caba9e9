import sys

import pytest

from llmpress.data import corpus_text
from llmpress.errors import ConfigError, DataUnavailableError


def test_wikitext_without_datasets_or_network_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(DataUnavailableError, match="datasets"):
        corpus_text("wikitext2", "test")


def test_unknown_corpus():
    with pytest.raises(ConfigError, match="unknown corpus"):
        corpus_text("wiki-fr", "test")
