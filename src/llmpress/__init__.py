"""llmpress: compress pretrained large language models.

Train-time weight clustering (DKM / eDKM), post-training shift-and-add reparameterization
(ShiftAddLLM) and delta compression of fine-tunes (DeltaDQ), on any Hugging Face causal LM.
The verbs live in :mod:`llmpress.api`; the command line in :mod:`llmpress.cli`.
"""

__version__ = "0.1.0"

from llmpress.errors import LlmpressError  # noqa: E402
from llmpress.hf import install as _install_hf  # noqa: E402

# transformers learns quant_method "llmpress" (from_pretrained of llmpress checkpoints); cheap:
# the registration itself waits until transformers loads its quantizer registry.
_install_hf()

__all__ = ["__version__", "LlmpressError"]
