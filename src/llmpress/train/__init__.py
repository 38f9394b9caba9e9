"""Fine-tuning: a plain AdamW loop (loss on target tokens, held-out evaluation, resumable state)
with hook points for compression in the loop (:class:`TrainHooks`)."""

from llmpress.train.config import TrainConfig
from llmpress.train.dkm_hooks import DKMHooks
from llmpress.train.datasets import DATASETS, load_split
from llmpress.train.hooks import TrainHooks
from llmpress.train.loop import FinetuneResult, finetune

METHODS: dict[str, type[TrainHooks]] = {"full": TrainHooks, "dkm": DKMHooks}

__all__ = ["DATASETS", "DKMHooks", "METHODS", "FinetuneResult", "TrainConfig", "TrainHooks", "finetune", "load_split"]
