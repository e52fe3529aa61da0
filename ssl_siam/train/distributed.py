"""torch.distributed set-up for `torchrun` and Slurm (`srun`): one process per GPU (or CPU process, gloo)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun (``RANK``/``WORLD_SIZE``) or srun (``SLURM_PROCID``/
    ``SLURM_NTASKS``); NCCL on CUDA, gloo on CPU. A CUDA device becomes ``cuda:<local rank>``."""
    env = os.environ
    size = int(env.get("WORLD_SIZE") or (env.get("SLURM_NTASKS") if "SLURM_PROCID" in env else None) or 1)
    if size == 1:
        return World(), device
    rank = int(env.get("RANK", env.get("SLURM_PROCID", 0)))
    local_rank = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", 0)))
    env.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
    env.setdefault("MASTER_PORT", "29500")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size)
    return World(rank, size, local_rank), device


def mean_across(value: float, world: World, device: torch.device) -> float:
    """Average a Python float over all processes (identity on one process)."""
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.size


def sum_across(values: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sum of a tensor over all processes (identity on one process); integers stay exact."""
    if world.size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def broadcast(obj: object, world: World) -> object:
    """Rank 0's ``obj`` on every process."""
    if world.size == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def main_first(world: World, work: Callable[[], T]) -> T:
    """``work()`` on rank 0, then (after a barrier) on the other ranks: rank 0 builds what is shared on disk
    (band statistics, mask caches), the others then find it built."""
    result = work() if world.is_main else None
    barrier(world)
    return result if world.is_main else work()  # type: ignore[return-value]
