"""Device and torch DDP setup from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); CPU otherwise.

``torchrun --nproc_per_node=N -m dfer.cli train --config RUN.yaml`` trains on N GPUs (NCCL); a plain
``dfer train`` is one process on one GPU if there is one, else on the CPU (gloo when WORLD_SIZE > 1 on CPU).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> DistEnv:
    """Initialise the process group when launched by torchrun and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device:
        dev = torch.device(device)
    else:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world, local, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_gather_tensor(env: DistEnv, t: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor of the same shape from every rank (dim 0), on every rank."""
    if not env.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_reduce_mean(env: DistEnv, value: float) -> float:
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def broadcast_flag(env: DistEnv, flag: bool) -> bool:
    """True on every rank if it is true on any rank (e.g. a preemption signal seen by one process)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
