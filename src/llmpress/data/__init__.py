"""Offline corpora and tasks, each a pinned file in a wheel the package index serves (DESIGN.md);
WikiText-2 when online; any local text with ``file:PATH``."""

from llmpress.errors import ConfigError

CORPORA = "'wiki' (offline, the default), 'file:PATH' (local UTF-8 text) or 'wikitext2' (needs network)"


def corpus_text(name: str, split: str) -> str:
    """Text of a corpus split: ``wiki``, ``file:PATH`` (both split by DESIGN.md's document rule)
    or ``wikitext2`` (its own splits)."""
    if name == "wiki":
        from llmpress.data.wiki import split_text

        return split_text(split)
    if name.startswith("file:"):
        from llmpress.data.wiki import file_documents, split_text

        return split_text(split, file_documents(name[len("file:"):]))
    if name == "wikitext2":
        from llmpress.data.wikitext import split_text

        return split_text(split)
    if name == "wiki-en":
        raise ConfigError("corpus 'wiki-en' came from the bigbench 1.0.0 sdist, which the package index no longer "
                          "serves; use 'wiki' (DESIGN.md's revised protocol)")
    raise ConfigError(f"unknown corpus {name!r}; choose {CORPORA}")
