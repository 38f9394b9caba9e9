"""Offline corpora and tasks (BIG-bench from its PyPI sdist); WikiText-2 when online."""

from llmpress.errors import ConfigError


def corpus_text(name: str, split: str) -> str:
    """Text of a named corpus split: ``wiki-en`` (offline) or ``wikitext2`` (needs network)."""
    if name == "wiki-en":
        from llmpress.data.wiki import split_text

        return split_text(split)
    if name == "wikitext2":
        from llmpress.data.wikitext import split_text

        return split_text(split)
    raise ConfigError(f"unknown corpus {name!r}; choose 'wiki-en' or 'wikitext2'")
