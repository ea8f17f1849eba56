"""torch.distributed helpers for runs started with ``torchrun``.

segal does not spawn processes: ``torchrun --nproc_per_node N segal acquire RECIPE`` sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and this module joins the group (NCCL on GPUs, gloo on
CPU).  Every rank runs the same deterministic loop; only rank 0 writes files, and every rank
agrees on the selected ids because scores are gathered and reduced with an index tie-break.
Pool scoring shards indices explicitly (``sorted_ids[rank::world]``) instead of using
``DistributedSampler``, which pads with duplicates.

Every collective waits at most :func:`group_timeout` (``SEGAL_DIST_TIMEOUT`` seconds, 30 minutes
by default) for the other ranks: a rank that took another branch (and so another collective) then
fails with gloo's or NCCL's timeout error, and torchrun stops the rest, instead of a silent stall.
Any choice made from what is on disk must therefore be the same on every rank (gather it first).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from segal.errors import UserError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


TIMEOUT_ENV = "SEGAL_DIST_TIMEOUT"
DEFAULT_TIMEOUT = timedelta(minutes=30)  # longer than any rank-0-only step (saving, a report) takes


def group_timeout(env: Mapping[str, str] | None = None) -> timedelta:
    """How long one collective waits for the other ranks: ``SEGAL_DIST_TIMEOUT`` seconds, else 30 minutes."""
    text = (os.environ if env is None else env).get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UserError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds",
                        fix=f"e.g. {TIMEOUT_ENV}=600, or unset it for {DEFAULT_TIMEOUT.seconds // 60} minutes")
    return timedelta(seconds=seconds)


def init_from_env(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns whether the run is distributed."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    timeout = group_timeout()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timeout)
    return True


def local_device(device: torch.device) -> torch.device:
    """Each rank's own GPU; CPU stays CPU."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of a sorted index array (strided, so shards differ by at most one)."""
    return np.asarray(indices)[rank() :: world()]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        work = tensor.clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work
    return tensor


def gather_scores(indices: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every rank's (indices, scores), sorted by index so all ranks hold the same arrays."""
    if not is_distributed():
        return indices, scores
    parts = all_gather_object((np.asarray(indices), np.asarray(scores)))
    idx = np.concatenate([p[0] for p in parts])
    sc = np.concatenate([p[1] for p in parts])
    order = np.argsort(idx, kind="stable")
    return idx[order], sc[order]


def average_gradients(module: torch.nn.Module) -> None:
    """Average gradients over ranks after ``backward``: DistributedDataParallel's arithmetic for modules
    called several times per step (VAAL's VAE sees a labeled and an unlabeled batch), where DDP's
    one-forward-per-backward hooks do not apply."""
    if not is_distributed():
        return
    for param in module.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world()
