"""How many intra-op threads a segal process uses, chosen from the cores it may actually run on.

PyTorch's default is one thread per core of the *machine*, whatever the process's CPU affinity
(``taskset``, a container's cpuset, a batch scheduler) or the user's ``OMP_NUM_THREADS`` say.  Two
processes that each take every core then fight: OpenMP threads spin at barriers waiting for a
partner that is descheduled, and both lose far more than half their speed.  So segal takes

1. ``--threads N`` (or the recipe's ``threads``) when given: the user knows best;
2. otherwise the cores in the affinity mask, capped by ``OMP_NUM_THREADS`` when that is set;

and divides the result between the ``jobs`` runs it starts side by side (``segal sweep --jobs``).
:func:`choose_threads` is the pure rule (tested with injected values); :func:`configure_threads`
reads the process's real state and applies it once, at the start of a command.

:func:`prefer_passive_wait` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it) before torch is
imported: idle OpenMP threads then sleep instead of spinning, which is what keeps two processes on
shared cores at about half speed each rather than a quarter.  It only works before the OpenMP
runtime is loaded, i.e. before ``import torch``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from segal.errors import UserError


def _positive_int(text: str | None) -> int | None:
    """``OMP_NUM_THREADS`` may be a list (``"4,2"``, nested levels): the first level counts."""
    if not text:
        return None
    head = text.split(",")[0].strip()
    return int(head) if head.isdigit() and int(head) > 0 else None


def usable_cores(affinity: set[int] | frozenset[int] | None = None) -> int:
    """Cores this process may run on: the affinity mask where the OS has one, else ``os.cpu_count()``."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # macOS, Windows: no affinity API
            return max(1, os.cpu_count() or 1)
    return max(1, len(affinity))


def choose_threads(requested: int | None, *, cores: int, env: Mapping[str, str], jobs: int = 1) -> int:
    """Threads for each of ``jobs`` side-by-side runs.

    ``requested`` (``--threads``) wins; otherwise ``cores``, capped by ``OMP_NUM_THREADS`` in ``env``.
    The total is divided between the jobs, at least one thread each.
    """
    if requested is not None and requested < 1:
        raise UserError(f"--threads {requested} must be at least 1", fix="e.g. --threads 2, or leave it out")
    if jobs < 1:
        raise UserError(f"--jobs {jobs} must be at least 1", fix="e.g. --jobs 2")
    if requested is not None:
        total = requested
    else:
        total = max(1, cores)
        omp = _positive_int(env.get("OMP_NUM_THREADS"))
        if omp is not None:
            total = min(total, omp)
    return max(1, total // jobs)


@dataclass(frozen=True)
class ThreadPlan:
    """What :func:`configure_threads` decided, for logs and the benchmark's settings line."""

    threads: int
    cores: int
    jobs: int
    omp_num_threads: str | None


def configure_threads(requested: int | None = None, jobs: int = 1) -> ThreadPlan:
    """Apply :func:`choose_threads` to this process (torch intra-op threads and OpenCV's pool)."""
    import cv2
    import torch

    cores = usable_cores()
    threads = choose_threads(requested, cores=cores, env=os.environ, jobs=jobs)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)  # OpenCV's resize in the loaders has its own pool, sized to the machine
    return ThreadPlan(threads, cores, jobs, os.environ.get("OMP_NUM_THREADS"))


def prefer_passive_wait(env: MutableMapping[str, str] | None = None) -> bool:
    """Ask OpenMP to sleep rather than spin when idle; a no-op once torch is loaded or if the user chose."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in target:
        return False
    target["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def child_environment(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a side-by-side child run: its share of threads, passed the standard way."""
    env = dict(os.environ if base is None else base)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


__all__ = ["ThreadPlan", "child_environment", "choose_threads", "configure_threads", "prefer_passive_wait",
           "usable_cores"]
