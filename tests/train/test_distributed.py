"""Data-parallel fine-tuning: 2 gloo ranks train the model one process trains."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from llmpress.methods.dkm import DKMConfig, DKMModelConfig
from llmpress.train import DKMHooks, TrainConfig, finetune
from llmpress.train.distributed import World

from conftest import make_model, make_tokenizer
from train.test_loop import HELD, TRAIN

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


def _worker(rank: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        results[rank] = [_train(dkm) for dkm in (False, True)]
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_worker, args=(_free_port(), results), nprocs=2, start_method="spawn")
        return results[0], results[1]


def test_shard_splits_a_batch_without_overlap():
    items = list(range(7))
    parts = [World(r, 3).shard(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items and all(parts)


def test_two_ranks_train_what_one_process_trains():
    ranks = _two_ranks()
    for i, dkm in enumerate((False, True)):
        single_state, single_losses, single_tokens = _train(dkm)
        for state, losses, tokens in (rank[i] for rank in ranks):
            # Same examples, same normalisation: only the order of float additions differs.
            assert tokens == single_tokens
            assert torch.allclose(torch.tensor(losses), torch.tensor(single_losses), rtol=1e-5)
            for name, value in single_state.items():
                assert torch.allclose(state[name].float(), value.float(), atol=1e-5), (dkm, name)
