"""Data-parallel fine-tuning: 2 gloo ranks train the model one process trains."""

import torch

from llmpress.methods.dkm import DKMConfig, DKMModelConfig
from llmpress.train import DKMHooks, TrainConfig, finetune
from llmpress.train.distributed import World

from tests.conftest import make_model, make_tokenizer
from tests.gloo import on_ranks
from tests.train.test_loop import HELD, TRAIN

CONFIG = TrainConfig(steps=3, lr=3e-3, warmup_steps=1, batch_size=4, grad_accum=2, seq_len=32, eval_interval=0,
                     eval_examples=2, max_new_tokens=2, save_interval=0, seed=0)
DKM = DKMModelConfig(linear=DKMConfig(n_bits=2, max_iter=2), embedding=None)


def _train(dkm: bool):
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    model = make_model(len(tokenizer))
    r = finetune(model, tokenizer, TRAIN, HELD, CONFIG, hooks=DKMHooks(DKM) if dkm else None, progress=False,
                 log=lambda *_: None)
    return {k: v.detach().clone() for k, v in r.model.state_dict().items()}, r.losses, r.train_tokens


def _both():
    return [_train(dkm) for dkm in (False, True)]


def test_shard_splits_a_batch_without_overlap():
    items = list(range(7))
    parts = [World(r, 3).shard(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items and all(parts)


def test_two_ranks_train_what_one_process_trains():
    ranks = on_ranks(_both)
    for i, dkm in enumerate((False, True)):
        single_state, single_losses, single_tokens = _train(dkm)
        for state, losses, tokens in (rank[i] for rank in ranks):
            # Same examples, same normalisation: only the order of float additions differs.
            assert tokens == single_tokens
            assert torch.allclose(torch.tensor(losses), torch.tensor(single_losses), rtol=1e-5)
            for name, value in single_state.items():
                assert torch.allclose(state[name].float(), value.float(), atol=1e-5), (dkm, name)
