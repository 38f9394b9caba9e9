"""Modules that hold a compressed format and run forward."""

from llmpress.nn.compressed_embedding import CompressedEmbedding
from llmpress.nn.compressed_linear import CompressedLinear
from llmpress.nn.format_module import FormatModule

MODULES = {"CompressedLinear": CompressedLinear, "CompressedEmbedding": CompressedEmbedding}

__all__ = ["MODULES", "CompressedEmbedding", "CompressedLinear", "FormatModule"]
