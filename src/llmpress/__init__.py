"""llmpress: compress pretrained large language models.

Train-time weight clustering (DKM / eDKM), post-training shift-and-add reparameterization
(ShiftAddLLM) and delta compression of fine-tunes (DeltaDQ), on any Hugging Face causal LM.
The verbs live in :mod:`llmpress.api`; the command line in :mod:`llmpress.cli`.
"""

__version__ = "0.1.0"

from llmpress.errors import LlmpressError  # noqa: E402

__all__ = ["__version__", "LlmpressError"]
