"""The acquisition-strategy contract.

A strategy sees the pool through an :class:`AcquisitionContext` and returns a :class:`Selection`
of exactly ``budget`` unlabeled pool indices.  Task-agnostic strategies (``random``, ``vaal``) set
``needs_model = False`` and must not touch ``ctx.model``; the loop then skips nothing but also
passes ``model=None`` when the user runs acquisition without a task network.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from segal.data.base import Dataset
from segal.device import Compute
from segal.progress import Progress
from segal.registry import Registry


class EvalLoader(Protocol):
    """Test-time batches ``(images, pool_indices)`` of ``indices``: resize + ImageNet normalisation only,
    in a deterministic order.  ``image_size_override=[H, W]`` replaces the task size (VAAL's VAE input)."""

    def __call__(self, indices: Sequence[int] | np.ndarray, image_size_override: Sequence[int] | None = None,
                 batch_size_override: int | None = None) -> DataLoader: ...


class TrainLoader(Protocol):
    """Shuffled, augmented batches ``(images, pool_indices)`` or, ``with_targets``, ``(images, targets,
    pool_indices)``; seeded by (seed, cycle, salt), ``drop_last`` when the subset exceeds one batch."""

    def __call__(self, indices: Sequence[int] | np.ndarray, image_size_override: Sequence[int] | None = None,
                 with_targets: bool = False, batch_size_override: int | None = None,
                 salt: int = 0) -> DataLoader: ...


@dataclass
class AcquisitionContext:
    """Everything a strategy may use to choose the next batch."""

    pool: Dataset
    labeled: np.ndarray  # pool indices, sorted
    unlabeled: np.ndarray  # pool indices, sorted
    budget: int
    cycle: int
    seed: int
    compute: Compute  # device, AMP, task image size, inference batch, workers
    task: str  # "segmentation" | "classification"
    num_classes: int
    ignore_index: int
    eval_loader: EvalLoader
    train_loader: TrainLoader
    model: nn.Module | None = None
    # build_model() -> a fresh, untrained task network (ensembles, QBC, suggestive annotation).
    build_model: Callable[[], nn.Module] | None = None
    # train_model(model, indices, seed) -> trained model (ensemble members), same recipe as the loop.
    train_model: Callable[[nn.Module, np.ndarray, int], nn.Module] | None = None
    workdir: Path | None = None  # the cycle directory, for caches and strategy checkpoints
    progress: Progress = field(default_factory=Progress)

    @property
    def device(self) -> torch.device:
        return self.compute.device

    @property
    def amp(self) -> bool:
        return self.compute.amp

    def require_model(self, who: str = "this strategy") -> nn.Module:
        """The loop's trained task network; a strategy that scores with it calls this instead of ``ctx.model``."""
        if self.model is None:
            raise RuntimeError(f"{who} needs the trained task network")
        return self.model

    def generator(self, salt: int = 0) -> np.random.Generator:
        """A numpy generator seeded by (seed, cycle, salt): the same on resume and on every rank."""
        return np.random.default_rng([self.seed, self.cycle, salt])


@dataclass
class Selection:
    """The chosen pool indices (most informative first), their scores and diagnostics."""

    indices: np.ndarray
    scores: np.ndarray | list[float] | None = None  # one per index, in the same order
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Strategy(abc.ABC):
    """Base class: subclasses declare their parameters as a dataclass in ``Params``."""

    name: ClassVar[str]
    needs_model: ClassVar[bool] = True
    # The strategy acquires its *lowest* scores first (VAAL: the discriminator's P(labeled), in [0, 1]).
    lowest_first: ClassVar[bool] = False

    @dataclass
    class Params:
        pass

    def __init__(self, params: Any = None):
        # Any: each subclass has its own Params dataclass, built and checked by make_strategy
        self.params: Any = params if params is not None else self.Params()

    @abc.abstractmethod
    def select(self, ctx: AcquisitionContext) -> Selection: ...


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str):
    def decorator(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        return STRATEGIES.register(name)(cls)

    return decorator


def top_k_lowest(scores: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` indices with the lowest score, ties broken by index (deterministic)."""
    order = np.lexsort((indices, scores))
    return indices[order[:k]]


def scores_of(chosen: np.ndarray, indices: np.ndarray, scores: np.ndarray) -> list[float]:
    """The scores of ``chosen`` (a subset of ``indices``), looked up in numpy: a dict over a 1.28M pool costs 100+ MB."""
    order = np.argsort(indices, kind="stable")
    pos = order[np.searchsorted(indices, np.asarray(chosen), sorter=order)]
    return np.asarray(scores, dtype=np.float64)[pos].tolist()


def top_k_highest(scores: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` indices with the highest score, ties broken by index (deterministic)."""
    order = np.lexsort((indices, -scores))
    return indices[order[:k]]


def selection_from(indices: np.ndarray, scores: np.ndarray, budget: int, **diagnostics) -> Selection:
    """The ``budget`` highest-scoring indices, their scores, and the pool's score mean and std."""
    chosen = top_k_highest(scores, indices, budget)
    return Selection(
        indices=chosen,
        scores=scores_of(chosen, indices, scores),
        diagnostics={**diagnostics, "pool_score_mean": float(scores.mean()), "pool_score_std": float(scores.std())},
    )
