"""Modules that hold a compressed format and run forward."""

from llmpress.nn.compressed_embedding import CompressedEmbedding
from llmpress.nn.compressed_linear import CompressedLinear
from llmpress.nn.delta_linear import DeltaLinear
from llmpress.nn.format_module import FormatModule
from llmpress.nn.shiftadd_linear import ShiftAddLinear

MODULES = {"CompressedLinear": CompressedLinear, "CompressedEmbedding": CompressedEmbedding,
           "ShiftAddLinear": ShiftAddLinear}

__all__ = ["MODULES", "CompressedEmbedding", "CompressedLinear", "DeltaLinear", "FormatModule", "ShiftAddLinear"]
