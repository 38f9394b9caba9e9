"""The fine-tuning loop: AdamW, warm-up + decay, gradient accumulation, loss on target tokens (or
every token) with optional distillation from the starting model, periodic held-out evaluation,
resumable state. Compression methods plug in through
:class:`~llmpress.train.hooks.TrainHooks`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from llmpress.data.examples import Generation
from llmpress.errors import ConfigError
from llmpress.eval.generation import evaluate_generation
from llmpress.train import distributed
from llmpress.train import state as train_state
from llmpress.train.config import TrainConfig
from llmpress.train.examples import IGNORE, Encoded, LazyEncoded, batch_indices, collate, encode
from llmpress.train.hooks import TrainHooks
from llmpress.train.schedule import lr_at


@dataclass
class FinetuneResult:
    model: nn.Module
    config: TrainConfig
    history: list[dict]                      # one row per evaluation: step, held-out loss, exact match
    losses: list[float]                      # training loss of every step (target tokens only)
    steps: int
    resumed_from: int                        # 0 for a fresh run
    seconds: float                           # wall time of this invocation
    train_tokens: int                        # tokens (prompt + target) seen by this invocation
    trainable_params: int
    frozen: list[str] = field(default_factory=list)
    path: Path | None = None                 # where the api saved the fine-tuned checkpoint


def _autocast(config: TrainConfig, device: torch.device):
    if config.dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def target_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor], teacher: nn.Module | None = None,
                    distill: float = 0.0) -> tuple[torch.Tensor, int]:
    """(sum of next-token NLL over target tokens, number of target tokens) of one batch.

    With a ``teacher`` and ``distill`` > 0 the sum is (1 - distill) x NLL + distill x KL(teacher ||
    model), the KL of the next-token distributions summed over the same target positions.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    n = int((labels != IGNORE).sum())
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")
    if teacher is None or distill == 0:
        return loss, n
    with torch.no_grad():
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        t_logp = F.log_softmax(t[:, :-1].float(), dim=-1)[labels != IGNORE]
    logp = F.log_softmax(logits, dim=-1)[labels != IGNORE]
    kl = (t_logp.exp() * (t_logp - logp)).sum()
    return (1 - distill) * loss + distill * kl, n


def loss_labels(batch: dict[str, torch.Tensor], loss_on: str) -> dict[str, torch.Tensor]:
    """The batch with the labels the training loss reads: as collated (answers) or every real token."""
    if loss_on == "all":
        batch = {**batch, "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)}
    return batch


def freeze_embeddings(model: nn.Module) -> list[str]:
    """Freeze the input embedding (an lm_head tied to it shares the parameter); return frozen names."""
    emb = model.get_input_embeddings()
    emb.weight.requires_grad_(False)
    return [n for n, p in model.named_parameters(remove_duplicate=False) if p is emb.weight]


def _optimizer(named: list[tuple[str, nn.Parameter]], config: TrainConfig) -> torch.optim.AdamW:
    # Weight decay only on matrices: decaying norm gains and biases towards 0 is not regularisation.
    decay = [p for _, p in named if p.dim() >= 2]
    plain = [p for _, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)


@torch.no_grad()
def held_out_loss(model: nn.Module, items: list[Encoded], pad_id: int, config: TrainConfig) -> float:
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(items), config.batch_size):
        batch = {k: v.to(device) for k, v in collate(items[i:i + config.batch_size], pad_id).items()}
        with _autocast(config, device):
            loss, k = target_loss_sum(model, batch)
        total, n = total + float(loss.detach()), n + k
    return total / max(n, 1)


def evaluate(model: nn.Module, tokenizer, held_out: list[Generation], encoded: list[Encoded], pad_id: int,
             config: TrainConfig, step: int) -> dict:
    """Held-out target loss and greedy exact match on ``held_out``."""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    loss = held_out_loss(model, encoded, pad_id, config)
    em = evaluate_generation(model, tokenizer, held_out, max_new_tokens=config.max_new_tokens,
                             batch_size=max(config.batch_size, 16), progress=False)
    model.train(was_training)
    return {"step": step, "held_out_loss": loss, "exact_match": em["exact_match"], "examples": em["examples"],
            "seconds": time.perf_counter() - start}


def finetune(model: nn.Module, tokenizer, train: list[Generation], held_out: list[Generation],
             config: TrainConfig, hooks: TrainHooks | None = None, state_dir: str | Path | None = None,
             progress: bool = True, log=print) -> FinetuneResult:
    """Fine-tune ``model`` in place for ``config.steps`` optimizer steps and return it (after
    ``hooks.finalize``) with its history.

    ``state_dir``: where a resumable state is written every ``config.save_interval`` steps; if it
    already holds a state of the same run, training continues from it.
    """
    if not train:
        raise ConfigError("no training examples")
    world = distributed.current()
    if config.batch_size < world.size:
        raise ConfigError(f"batch_size {config.batch_size} is smaller than the {world.size} data-parallel ranks; "
                          f"each rank needs at least one example per micro-batch")
    hooks = hooks or TrainHooks()
    torch.manual_seed(config.seed)
    # The teacher is the model as given, copied before compression wraps it or a state is loaded.
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if config.distill > 0 else None
    model = hooks.prepare(model)
    frozen = [] if config.train_embeddings else freeze_embeddings(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("the model has no trainable parameters")
    optimizer = _optimizer(named, config)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    items = LazyEncoded(tokenizer, train, config.seq_len)
    # An evenly spaced subset: held-out splits are in file order, i.e. grouped by subtask.
    stride = max(1, len(held_out) // config.eval_examples) if config.eval_examples else 1
    eval_set = held_out[::stride][:config.eval_examples]
    eval_items = [encode(tokenizer, ex, config.seq_len) for ex in eval_set]
    history: list[dict] = []
    losses: list[float] = []
    start_step = 0
    state_dir = Path(state_dir) if state_dir is not None else None
    if train_state.exists(state_dir):
        saved = train_state.load(state_dir, named, optimizer, config.to_dict(), hooks.settings())
        hooks.load_state(model, saved.method)
        start_step, history, losses = saved.step, saved.history, saved.losses
        if world.main:
            log(f"resuming from step {start_step} of {config.steps} ({state_dir})")

    started, tokens = time.perf_counter(), 0
    model.train()
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="fine-tune",
               unit="step", disable=not progress or not world.main)
    for step in bar:
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        hooks.before_step(model, step, config.steps)
        batches = [loss_labels(collate(world.shard([items[i] for i in batch_indices(len(items), step, m, config)]),
                                       pad_id), config.loss_on) for m in range(config.grad_accum)]
        # Normalise by the target tokens of the whole step (all micro-batches, all ranks), so
        # accumulation and data parallelism both equal one big batch.
        n_targets, = world.sum([sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)])
        step_loss, step_tokens = 0.0, 0
        for b in batches:
            b = {k: v.to(device) for k, v in b.items()}
            with _autocast(config, device):
                loss, _ = target_loss_sum(model, b, teacher, config.distill)
            (loss / n_targets).backward()
            step_loss += float(loss.detach()) / n_targets
            step_tokens += int(b["attention_mask"].sum())
        world.sum_grads([p for _, p in named])
        step_loss, step_tokens = world.sum([step_loss, step_tokens])
        tokens += int(step_tokens)
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in named], config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
        done = step + 1
        # Evaluation and states are the main rank's: the others hold the same weights.
        if world.main and ((config.eval_interval and done % config.eval_interval == 0) or done == config.steps):
            row = evaluate(model, tokenizer, eval_set, eval_items, pad_id, config, done)
            row["train_loss"] = sum(losses[-10:]) / len(losses[-10:])
            history.append(row)
            log(f"step {done}: train loss {row['train_loss']:.4f}, held-out loss {row['held_out_loss']:.4f}, "
                f"exact match {row['exact_match']:.3f} ({row['examples']} examples)")
        if world.main and state_dir is not None and config.save_interval and done % config.save_interval == 0 \
                and done < config.steps:
            train_state.save(state_dir, done, named, optimizer, config.to_dict(), hooks.settings(), history, losses,
                             method=hooks.state(model))
    bar.close()
    model.eval()
    model = hooks.finalize(model)
    return FinetuneResult(model, config, history, losses, config.steps, start_step,
                          time.perf_counter() - started, tokens, sum(p.numel() for _, p in named), frozen)
