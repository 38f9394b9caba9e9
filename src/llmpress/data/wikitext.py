"""WikiText-2 through the ``datasets`` library, for comparison with published numbers.

Needs the optional ``datasets`` package and network access to the Hugging Face hub (or its local
cache); the project's own protocol uses wiki, which works offline.
"""

from __future__ import annotations

from llmpress.errors import DataUnavailableError


def split_text(split: str = "test") -> str:
    try:
        import datasets
    except ImportError:
        raise DataUnavailableError("wikitext2 needs the 'datasets' package: pip install 'llmpress[datasets]'") from None
    try:
        ds = datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split=split)
    except Exception as exc:  # datasets raises many types for "offline"
        raise DataUnavailableError(
            f"wikitext2 could not be loaded ({type(exc).__name__}: {exc}); it needs network access to the "
            "Hugging Face hub or a local datasets cache. Offline, use the built-in corpus: --corpus wiki"
        ) from None
    return "\n\n".join(ds["text"])
