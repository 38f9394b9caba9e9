"""Modules that hold a compressed format and run forward."""

from llmpress.nn.compressed_linear import CompressedLinear

MODULES = {"CompressedLinear": CompressedLinear}

__all__ = ["MODULES", "CompressedLinear"]
