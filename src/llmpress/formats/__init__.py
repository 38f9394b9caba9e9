"""Compressed tensor formats: pure data, pack/unpack and dequantize. No torch.nn here.

Every format exposes ``tensors()`` (what is stored), ``meta()`` (JSON-able shape parameters),
``nbytes`` (stored bytes) and ``dequantize()``; :data:`FORMATS` maps the name in a checkpoint
manifest back to the class.
"""

from llmpress.formats.bcq import BCQSpec, BCQTensor
from llmpress.formats.ggml_blocks import GGMLBlocks, GGMLSpec
from llmpress.formats.palette import PaletteSpec, PaletteTensor
from llmpress.formats.sign_delta import SignDeltaTensor
from llmpress.formats.sparse_delta import SparseDeltaTensor
from llmpress.formats.uniform import UniformSpec, UniformTensor

FORMATS = {UniformTensor.FORMAT: UniformTensor, BCQTensor.FORMAT: BCQTensor, PaletteTensor.FORMAT: PaletteTensor,
           GGMLBlocks.FORMAT: GGMLBlocks, SparseDeltaTensor.FORMAT: SparseDeltaTensor,
           SignDeltaTensor.FORMAT: SignDeltaTensor}

__all__ = ["FORMATS", "BCQSpec", "BCQTensor", "GGMLBlocks", "GGMLSpec", "PaletteSpec", "PaletteTensor",
           "SignDeltaTensor", "SparseDeltaTensor", "UniformSpec", "UniformTensor"]
