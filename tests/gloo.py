"""Run a function on 2 gloo ranks (spawned processes) and collect what each rank returns."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn, world_size: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        results[rank] = fn()
    finally:
        dist.destroy_process_group()


def on_ranks(fn, world_size: int = 2) -> list:
    """[fn() on rank 0, fn() on rank 1, ...]; ``fn`` must be picklable (a module-level function)."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_worker, args=(fn, world_size, _free_port(), results), nprocs=world_size,
                           start_method="spawn")
        return [results[r] for r in range(world_size)]
