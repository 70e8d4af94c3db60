"""Joining the data-parallel process group from inside a rank, whoever launched it.

A launcher (torchrun, the ``deepspeed`` launcher, Ray Train; models/launch.py starts the first
and the last) sets the rendezvous variables below; without one, as when the train stage runs
in-process, they are set here for a group of one. DeepSpeed then joins that group, so the
training loop (models/train.py) is the same for 1 rank and for N.
"""

from __future__ import annotations

import os
import socket

import torch

RENDEZVOUS_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""What a launcher sets for each rank; a child launcher must not inherit the parent's."""


def init_process_group() -> None:
    """Join the group a launcher set up, or make a 1-rank one."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    if torch.distributed.is_initialized():
        # A group this process made for an earlier run: DeepSpeed's engine reads LOCAL_RANK from
        # the environment, which a caller may have cleaned since (so its subprocesses do not
        # inherit this group's port).
        if world_size() == 1:
            os.environ.setdefault("LOCAL_RANK", "0")
        return
    if "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(_free_port())}
        )
    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name())


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def global_mean(value: torch.Tensor) -> float:
    """A value averaged over ranks, so 1 and N processes report the same number for the same batch."""
    value = value.float().clone()
    if world_size() > 1:
        torch.distributed.all_reduce(value)
        value /= world_size()
    return value.item()


def launcher_free_env() -> dict[str, str]:
    """This process's environment without the rendezvous variables (for starting a new group)."""
    return {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_ENV}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
