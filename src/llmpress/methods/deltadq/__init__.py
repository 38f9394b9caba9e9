"""Delta compression of fine-tuned models: DeltaDQ (Jiang et al. 2024, group-wise dropout with a
searched group size + separate quantization) and the baselines DARE, BitDelta and magnitude
pruning + quantization. Pure algorithms on delta tensors; the model-level driver is
:mod:`llmpress.models.delta`."""

from llmpress.methods.deltadq.accounting import account
from llmpress.methods.deltadq.config import BitDeltaConfig, DAREConfig, DeltaDQConfig, MagnitudeConfig, keep_fraction
from llmpress.methods.deltadq.extract import DeltaPlan, extract
from llmpress.methods.deltadq.group_dropout import group_dropout, keep_for, layer_seed
from llmpress.methods.deltadq.group_search import output_error, search_group_size
from llmpress.methods.deltadq.layer import CONFIGS, compress_layer, config_for

__all__ = ["CONFIGS", "BitDeltaConfig", "DAREConfig", "DeltaDQConfig", "DeltaPlan", "MagnitudeConfig", "account",
           "compress_layer", "config_for", "extract", "group_dropout", "keep_for", "keep_fraction", "layer_seed",
           "output_error", "search_group_size"]
