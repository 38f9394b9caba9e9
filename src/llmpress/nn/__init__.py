"""Modules that hold a compressed format and run forward."""

from llmpress.nn.compressed_linear import CompressedLinear
from llmpress.nn.shiftadd_linear import ShiftAddLinear

MODULES = {"CompressedLinear": CompressedLinear, "ShiftAddLinear": ShiftAddLinear}

__all__ = ["MODULES", "CompressedLinear", "ShiftAddLinear"]
