"""Settings of a fine-tuning run, validated on construction and stored with the run's state."""

from __future__ import annotations

from dataclasses import dataclass

from llmpress.config import JsonConfig
from llmpress.errors import ConfigError

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("fp32", "bf16")
LOSS_ON = ("answers", "all")


@dataclass
class TrainConfig(JsonConfig):
    """AdamW fine-tuning.

    ``steps`` optimizer steps, each over ``batch_size`` x ``grad_accum`` examples (truncated to
    ``seq_len`` tokens). The learning rate rises linearly for ``warmup_steps`` then decays to
    ``min_lr_ratio`` x ``lr`` by ``schedule``. ``dtype`` bf16 runs forward/backward under bf16
    autocast with fp32 master weights. Every ``eval_interval`` steps (0 = only at the end) the run
    measures held-out loss and greedy exact match on ``eval_examples`` evenly spaced held-out
    examples; every
    ``save_interval`` steps (0 = never) it writes a resumable state. ``train_embeddings`` False
    freezes the input embedding (and an lm_head tied to it), so a delta leaves them shared.

    ``loss_on``: "answers" (the target tokens only: instruction tuning) or "all" (every token of
    prompt and answer: language modelling on the same text). ``distill`` in [0, 1]: the weight of
    knowledge distillation, the KL divergence from the model as it was before training (a frozen
    copy, the teacher) to the trained one on the same tokens; the cross-entropy keeps 1 -
    ``distill``. Compression-aware training uses it to pull a clustered model back to the original.
    """

    steps: int = 300
    lr: float = 5e-5
    warmup_steps: int = 20
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    seq_len: int = 64
    dtype: str = "fp32"
    eval_interval: int = 100
    eval_examples: int = 200
    max_new_tokens: int = 8
    save_interval: int = 50
    train_embeddings: bool = True
    loss_on: str = "answers"
    distill: float = 0.0
    seed: int = 0

    def __post_init__(self):
        self.betas = tuple(self.betas)
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "seq_len": self.seq_len, "max_new_tokens": self.max_new_tokens}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "eval_interval", "eval_examples", "save_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0 (grad_clip 0 = no clipping)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown training dtype {self.dtype!r}; choose one of {DTYPES}")
        if self.loss_on not in LOSS_ON:
            raise ConfigError(f"loss_on must be one of {LOSS_ON}, got {self.loss_on!r}")
        if not 0 <= self.distill <= 1:
            raise ConfigError(f"distill (the weight of the distillation loss) must be in [0, 1], got {self.distill}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum
