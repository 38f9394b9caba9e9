"""Model specs -> model + tokenizer; compressible layers; module swapping."""

from llmpress.models.resolve import LoadedModel, load_model

__all__ = ["LoadedModel", "load_model"]
