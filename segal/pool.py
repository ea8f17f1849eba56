"""The labeled/unlabeled pool: the single source of truth for what is labeled.

State lives in ``state.json`` in the run directory and is always replaced atomically (temp file,
fsync, rename), so a crash at any moment leaves either the old or the new state, never a torn one.
Labeled pool indices are stored per cycle (the cycle in which they were labeled), so the file stays
readable, and a hand edit that makes it inconsistent is caught on load rather than trusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segal.errors import UserError
from segal.fileio import atomic_write_bytes

STATE_VERSION = 1
STAGES = ("train", "evaluate", "acquire", "label", "await_labels", "done")


@dataclass
class PoolState:
    """Which pool indices are labeled (by cycle), which are pending annotation, and where the loop is."""

    size: int
    budgets: list[int]
    seed: int
    pool_fingerprint: str
    labeled: dict[int, list[int]] = field(default_factory=dict)  # cycle -> pool indices labeled then
    pending: list[int] = field(default_factory=list)  # chosen, waiting for human labels
    human: list[int] = field(default_factory=list)  # labeled with an imported mask (labels/<id>.png must exist)
    cycle: int = 0
    stage: str = "train"
    # Region-level runs only: the pointer to the region labels file (segal.regions.state); absent in image-level
    # runs, so their state.json is exactly what it always was.  ``labeled`` then holds the images touched.
    regions: dict[str, Any] | None = None

    # ------------------------------------------------------------------ views
    def labeled_indices(self) -> np.ndarray:
        parts = [np.asarray(v, dtype=np.int64) for v in self.labeled.values()]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def unlabeled_indices(self) -> np.ndarray:
        mask = np.ones(self.size, dtype=bool)
        mask[self.labeled_indices()] = False
        mask[np.asarray(self.pending, dtype=np.int64)] = False
        return np.flatnonzero(mask)

    @property
    def num_labeled(self) -> int:
        return sum(len(v) for v in self.labeled.values())

    @property
    def last_cycle(self) -> int:
        return len(self.budgets) - 1

    # ------------------------------------------------------------------ transitions
    def add_labeled(self, indices: np.ndarray | list[int], cycle: int) -> None:
        new = [int(i) for i in indices]
        taken = set(self.labeled_indices().tolist())
        clash = [i for i in new if i in taken]
        if clash:
            raise ValueError(f"pool indices already labeled: {clash[:5]}")
        if len(set(new)) != len(new):
            raise ValueError("duplicate indices in one labeling step")
        self.labeled.setdefault(cycle, []).extend(new)
        pending = set(new)
        self.pending = [i for i in self.pending if i not in pending]

    def add_pending(self, indices: np.ndarray | list[int]) -> None:
        new = [int(i) for i in indices]
        unl = set(self.unlabeled_indices().tolist())
        bad = [i for i in new if i not in unl]
        if bad:
            raise ValueError(f"pool indices are not unlabeled: {bad[:5]}")
        self.pending.extend(new)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "size": self.size,
            "budgets": self.budgets,
            "seed": self.seed,
            "pool_fingerprint": self.pool_fingerprint,
            "cycle": self.cycle,
            "stage": self.stage,
            "num_labeled": self.num_labeled,
            "pending": self.pending,
            "labeled": {str(k): v for k, v in sorted(self.labeled.items())},
            **({"human": sorted(self.human)} if self.human else {}),  # absent in runs without imports
            **({"regions": self.regions} if self.regions is not None else {}),  # absent in image-level runs
        }

    def save(self, path: Path) -> None:
        self.check(path)
        atomic_write_bytes(path, (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> PoolState:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError("state file not found", path=path, fix="start the run with `segal acquire RECIPE`") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"state file is not valid JSON ({exc.msg} at line {exc.lineno})", path=path,
                            fix="restore it from a backup; segal never writes a partial state") from None
        except (RecursionError, UnicodeDecodeError) as exc:  # nesting too deep to parse, or not UTF-8 text
            raise UserError(f"state file is not valid JSON ({type(exc).__name__})", path=path,
                            fix="restore it from a backup; segal never writes a partial state") from None
        try:
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            state = cls(
                size=int(raw["size"]),
                budgets=[int(b) for b in raw["budgets"]],
                seed=int(raw["seed"]),
                pool_fingerprint=str(raw["pool_fingerprint"]),
                labeled={int(k): [int(i) for i in v] for k, v in raw["labeled"].items()},
                pending=[int(i) for i in raw.get("pending", [])],
                human=[int(i) for i in raw.get("human", [])],  # states written before imports were recorded lack it
                cycle=int(raw["cycle"]),
                stage=str(raw["stage"]),
                regions=raw.get("regions"),  # checked with the rest below
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"state file is malformed ({exc})", path=path, fix="restore it from a backup") from None
        state.check(path)
        return state

    def check(self, path: Path | str = "state.json") -> None:
        """Reject states no sequence of segal operations can produce."""

        def bad(why: str) -> UserError:
            return UserError(f"inconsistent state: {why}", path=path, fix="restore the file; do not edit state.json by hand")

        if self.stage not in STAGES:
            raise bad(f"unknown stage {self.stage!r}")
        if not 0 <= self.cycle < len(self.budgets):
            raise bad(f"cycle {self.cycle} outside the {len(self.budgets)} planned budgets")
        labeled = self.labeled_indices()
        if len(labeled) and (labeled[0] < 0 or labeled[-1] >= self.size):
            raise bad("a labeled index is outside the pool")
        if len(np.unique(labeled)) != len(labeled):
            raise bad("an image is labeled twice")
        if set(self.pending) & set(labeled.tolist()):
            raise bad("an image is both pending and labeled")
        if not set(self.human) <= set(labeled.tolist()):
            raise bad("an image has an imported mask but is not labeled")
        if any(i < 0 or i >= self.size for i in self.pending) or len(set(self.pending)) != len(self.pending):
            raise bad("pending indices are out of range or duplicated")
        if any(k > self.cycle for k in self.labeled):
            raise bad("images labeled in a future cycle")
        if self.regions is not None:
            why = region_pointer_problem(self.regions, self.cycle)
            if why:
                raise bad(f"the 'regions' entry {why}")
            return  # budgets count the run's cost unit, not images: segal.regions.state checks the labels file
        if self.stage in ("train", "evaluate", "acquire") and len(labeled) != self.budgets[self.cycle]:
            raise bad(f"{len(labeled)} labeled images but cycle {self.cycle} expects {self.budgets[self.cycle]}")


REGION_FILE_PATTERN = r"regions-labels-[0-9a-f]{16}\.npy"  # content-addressed, next to state.json
REGION_POINTER_KEYS = ("file", "sha256", "num_regions", "maps", "labeled", "pending")


class _Labelable(Protocol):
    def add_pending(self, ids: Any) -> None: ...
    def add_labeled(self, ids: Any, cycle: int) -> None: ...


def hand_over(labels: _Labelable, state: PoolState, chosen: Any, cycle: int, *, human: bool) -> None:
    """The label stage of cycle ``cycle`` for ``chosen`` (images of ``state``, or regions of a region run's
    labels): a human oracle makes them pending and the run waits for ``segal import``; the simulated
    one labels them in cycle ``cycle + 1`` and the next cycle trains.  The caller saves the state."""
    if human:
        labels.add_pending(chosen)
        state.stage = "await_labels"
    else:
        labels.add_labeled(chosen, cycle=cycle + 1)
        state.cycle = cycle + 1
        state.stage = "train"


def region_pointer_problem(pointer: object, cycle: int) -> str | None:
    """What is wrong with the shape of state.json's ``regions`` entry (``None``: nothing).

    Only its shape: whether the file it names holds what it says is checked on load by
    :func:`segal.regions.state.load_region_labels`, which reads that file.
    """
    if not isinstance(pointer, dict) or sorted(pointer) != sorted(REGION_POINTER_KEYS):
        return f"must hold exactly the keys {', '.join(REGION_POINTER_KEYS)}"
    if not isinstance(pointer["file"], str) or not re.fullmatch(REGION_FILE_PATTERN, pointer["file"]):
        return f"names the file {pointer['file']!r}, not one segal writes (regions-labels-<hash>.npy)"
    for key, length in (("sha256", 64), ("maps", 16)):
        if not isinstance(pointer[key], str) or not re.fullmatch(f"[0-9a-f]{{{length}}}", pointer[key]):
            return f"has a malformed '{key}'"
    counts = [pointer["num_regions"], pointer["pending"], *(pointer["labeled"] if isinstance(pointer["labeled"], list) else [None])]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return "has counts that are not whole numbers ≥ 0"
    if len(pointer["labeled"]) > cycle + 1:
        return "counts regions labeled in a future cycle"
    if sum(pointer["labeled"]) + pointer["pending"] > pointer["num_regions"]:
        return "counts more labeled and pending regions than the pool holds"
    return None
