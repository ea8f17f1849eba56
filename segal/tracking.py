"""Experiment tracking: a run's numbers and query images as TensorBoard event files.

The loop and the engine talk to a :class:`Tracker`.  The default, :class:`NullTracker`, does
nothing and imports nothing, so a run without ``log.tensorboard`` never loads tensorboard.  What is
tracked is a view of the run's own files (``metrics.json``, ``train.json``, ``queries.json``) and
of the training loss: tracking never changes a result.

Layout under ``<run dir>/tensorboard`` (the ``--logdir``), one TensorBoard run per folder:

* ``cycles`` — one step per active-learning cycle (step = cycle): ``eval/*``, ``iou/<class>``,
  ``pool/*``, ``train/final_loss``, ``acquired/<class>``, ``<strategy>/*`` (VAAL's losses, AUROC
  and its interval), histograms and the query images with their predicted masks;
* ``train/cycle_<k>`` — ``train/loss`` and ``train/lr`` of cycle k's task network, step = optimiser step.

Resume: a writer opens lazily with ``purge_step`` = the first step it writes, so TensorBoard's
reader (and TensorBoard's server) drops whatever an interrupted earlier session wrote at that step
or later (its SessionLog START event).  The loop re-logs what the finished stages of the cycle it
resumes in wrote (``ActiveLoop._replay_tracking``), and training resumes from an epoch checkpoint
whose steps are all flushed before it is saved, so after any kill every tag holds each step once,
with the value an uninterrupted run writes.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segal.errors import UserError

QUERY_IMAGES = 4  # query images shown per cycle
PANEL_SIDE = 256  # longest side of an image | overlay panel, in pixels
OVERLAY_ALPHA = 0.5  # weight of the class colour over the image
STRATEGY_SCALARS = ("auroc", "labeled_score_mean", "pool_score_mean", "pool_score_std", "seconds")
Numbers = Sequence[float] | np.ndarray
EVAL_SKIP = {"cycle", "labeled", "pool", "fraction", "seed", "test_size", "eval_seconds", "train_seconds",
             "eval_cpu_seconds", "train_cpu_seconds"}


class Tracker(Protocol):
    """Where numbers and images go; each method is a no-op for :class:`NullTracker`."""

    def scalar(self, tag: str, value: float, step: int) -> None: ...

    def histogram(self, tag: str, edges: Numbers, counts: Numbers, step: int) -> None:
        """``counts[i]`` falls in ``[edges[i], edges[i + 1])``."""

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: H×W×3 uint8."""

    def flush(self) -> None: ...

    def sub(self, name: str) -> Tracker:
        """The tracker of a sub-run (a folder, shown as its own run by TensorBoard)."""

    def close(self) -> None: ...


class NullTracker:
    """Tracking off."""

    def scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def histogram(self, tag: str, edges: Numbers, counts: Numbers, step: int) -> None:
        pass

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def sub(self, name: str) -> Tracker:
        return self

    def close(self) -> None:
        pass


def require_tensorboard(source: str) -> None:
    """Fail before a run writes anything when ``log.tensorboard`` is asked for but not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("log.tensorboard is on but the tensorboard package is not installed", path=source,
                        fix="pip install 'segal-vaal[tensorboard]', or set log.tensorboard: false")


class TensorBoardTracker:
    """Event files in ``logdir`` (and its sub-runs) through ``torch.utils.tensorboard.SummaryWriter``."""

    def __init__(self, logdir: Path | str):
        self.logdir = Path(logdir)
        self._writer: Any = None
        self._subs: dict[str, TensorBoardTracker] = {}

    def _open(self, step: int):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            _wait_past_newest(self.logdir)
            self._writer = SummaryWriter(str(self.logdir), purge_step=int(step), flush_secs=30)
        return self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._open(step).add_scalar(tag, float(value), int(step))

    def histogram(self, tag: str, edges: Numbers, counts: Numbers, step: int) -> None:
        c, e = np.asarray(counts, dtype=np.float64), np.asarray(edges, dtype=np.float64)
        if c.sum() <= 0:
            return  # TensorBoard cannot draw an empty histogram
        centres = (e[:-1] + e[1:]) / 2
        self._open(step).add_histogram_raw(
            tag, min=float(e[0]), max=float(e[-1]), num=float(c.sum()), sum=float((centres * c).sum()),
            sum_squares=float((centres**2 * c).sum()), bucket_limits=e[1:].tolist(), bucket_counts=c.tolist(),
            global_step=int(step))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._open(step).add_image(tag, np.ascontiguousarray(image), int(step), dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        for sub in self._subs.values():
            sub.flush()

    def sub(self, name: str) -> Tracker:
        if name not in self._subs:
            self._subs[name] = TensorBoardTracker(self.logdir / name)
        return self._subs[name]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()


def _wait_past_newest(logdir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second it was
    created: a session's file must sort after the last session's, or its purge would come first."""
    seconds = [int(p.name.split(".")[3]) for p in logdir.glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)


def open_tracker(run_dir: Path, enabled: bool) -> Tracker:
    return TensorBoardTracker(run_dir / "tensorboard") if enabled else NullTracker()


# ---------------------------------------------------------------------- what a cycle records

def log_evaluation(tracker: Tracker, cycle: int, metrics: dict, train_info: dict) -> None:
    """``metrics.json`` (and ``train.json``) of ``cycle`` at step ``cycle``; per-class scores by class name."""
    for key, value in metrics.items():
        if key in EVAL_SKIP or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            tracker.scalar(f"eval/{key}", value, cycle)
        elif isinstance(value, dict) and key.startswith("per_class"):
            prefix = "iou" if key == "per_class_iou" else key.removeprefix("per_class_")
            for name, score in value.items():
                if isinstance(score, int | float):  # None: the class is absent from the split
                    tracker.scalar(f"{prefix}/{name}", score, cycle)
    tracker.scalar("pool/labeled", metrics["labeled"], cycle)
    tracker.scalar("pool/fraction", metrics["fraction"], cycle)
    for key, tag in (("final_loss", "train/final_loss"), ("steps", "train/steps"), ("seconds", "time/train_seconds"),
                     ("cpu_seconds", "time/train_cpu_seconds")):
        if isinstance(train_info.get(key), int | float):
            tracker.scalar(tag, train_info[key], cycle)
    if isinstance(metrics.get("eval_seconds"), int | float):
        tracker.scalar("time/eval_seconds", metrics["eval_seconds"], cycle)
    tracker.flush()


def log_acquisition(tracker: Tracker, cycle: int, queries: dict, class_names: Sequence[str],
                    panels: Sequence[np.ndarray] = ()) -> None:
    """``queries.json`` of ``cycle``: the strategy's scalar diagnostics (VAAL: losses, AUROC and its
    95% interval), its score histogram, the acquired class shares, and the query panels."""
    d, name = queries.get("diagnostics") or {}, queries["strategy"]
    tracker.scalar("time/acquire_seconds", queries["seconds"], cycle)
    for key, value in d.items():
        if (key in STRATEGY_SCALARS or (key.startswith("final_") and key.endswith("_loss"))) \
                and isinstance(value, int | float) and not isinstance(value, bool):
            tracker.scalar(f"{name}/{key}", value, cycle)
    if isinstance(d.get("auroc_ci"), list) and len(d["auroc_ci"]) == 2:
        tracker.scalar(f"{name}/auroc_ci_low", d["auroc_ci"][0], cycle)
        tracker.scalar(f"{name}/auroc_ci_high", d["auroc_ci"][1], cycle)
    hist = d.get("pool_score_histogram")
    if isinstance(hist, dict):
        tracker.histogram(f"{name}/pool_scores", hist["edges"], hist["counts"], cycle)
    shares = d.get("class_histogram")
    if isinstance(shares, dict):
        for cls, share in shares.items():
            tracker.scalar(f"acquired/{cls}", share, cycle)
        tracker.histogram("acquired/classes", np.arange(len(class_names) + 1) - 0.5,
                          [shares.get(c, 0.0) for c in class_names], cycle)
    for k, panel in enumerate(panels):
        tracker.image(f"queries/{k}", panel, cycle)
    tracker.flush()


def query_panel(image: np.ndarray, mask: np.ndarray | None, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """The image and, beside it, the predicted mask's class colours over it (ignored pixels: the image);
    scaled to at most ``PANEL_SIDE`` pixels on its longer side."""
    from PIL import Image

    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    parts = [image]
    if mask is not None:
        palette = np.zeros((256, 3), np.float64)
        palette[: len(colors)] = np.asarray(colors, dtype=np.float64)
        known = (mask < len(colors))[..., None]
        blend = (1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * palette[mask]
        parts.append(np.where(known, blend, image).round().astype(np.uint8))
    panel = np.concatenate(parts, axis=1)
    scale = PANEL_SIDE / max(panel.shape[:2])
    if scale < 1:
        size = (max(1, round(panel.shape[1] * scale)), max(1, round(panel.shape[0] * scale)))
        panel = np.asarray(Image.fromarray(panel).resize(size, Image.Resampling.BILINEAR))
    return panel
