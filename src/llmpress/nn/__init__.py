"""Modules that hold a compressed format and run forward."""

from llmpress.nn.compressed_linear import CompressedLinear
from llmpress.nn.delta_linear import DeltaLinear

MODULES = {"CompressedLinear": CompressedLinear}

__all__ = ["MODULES", "CompressedLinear", "DeltaLinear"]
