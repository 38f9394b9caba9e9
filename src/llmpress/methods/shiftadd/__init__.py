"""ShiftAddLLM (You et al., "ShiftAddLLM: Accelerating Pretrained LLMs via Post-Training
Multiplication-Less Reparameterization", NeurIPS 2024, arXiv 2406.05981).

- :mod:`.bcq`: binary-coding quantization (greedy + alternating refinement)
- :mod:`.shifts`: scales rounded to (additive) powers of two
- :mod:`.quantize`: multi-objective (weight + output activation) quantization of one layer
- :mod:`.allocation`: sensitivity-driven mixed bit widths under a stored-bits budget
"""

from llmpress.methods.shiftadd.config import ShiftAddConfig
from llmpress.methods.shiftadd.quantize import layer_spec, quantize, quantize_plain

__all__ = ["ShiftAddConfig", "layer_spec", "quantize", "quantize_plain"]
