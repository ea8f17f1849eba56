"""The run side of ``segal serve``: predictions from the last finished network, annotations in, retraining.

One :class:`Backend` holds the run's lock for its lifetime (it is the run's one writer).  Request
threads predict with the current :class:`Snapshot` and validate annotations; one background thread
retrains.  The pieces and why they are crash-safe:

* An annotation is checked like ``segal import`` (:func:`segal.interchange.labelstudio.load_tasks`: known
  id, image size, class names, a non-empty mask) and written atomically to ``serve/inbox/<id>.png``;
  once the webhook has answered, the label survives a kill.  A bad one raises and writes nothing.
* After ``serve.retrain_every`` new labels the thread *commits* them: copies them to ``labels/``, then
  one atomic ``state.json`` write labels them in cycle k+1 (the commit point), then empties the inbox.
  A kill before the state write leaves the inbox to commit again; after it, the inbox copies of
  labeled ids are dropped on restart.
* Then it drives :class:`~segal.loop.ActiveLoop` (train → evaluate → acquire, as ``segal acquire`` does
  after an import) until the run awaits labels again, scores the pool (:mod:`segal.serve.scores`) and
  only then swaps the snapshot, so predictions meanwhile come from the previous network.  The loop
  resumes from its own files, so a server killed mid-retraining resumes the job on restart.

Each retraining labels what arrived, so the next budget is re-planned from it: the run's in-memory
recipe plans steps of ``retrain_every`` up to the whole pool (the stored recipe is left as it is).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
from torch import nn

from segal.engine import predict_masks
from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.human import acquisition_scores
from segal.interchange.labelstudio import load_tasks, task_id
from segal.loop import ActiveLoop
from segal.pool import PoolState
from segal.progress import Progress
from segal.runs import open_run, remove_crash_leftovers
from segal.serve.protocol import ANNOTATION_ACTIONS, annotated_task, brush_result, brush_target, tasks_of
from segal.serve.scores import compute_scores, load_scores

SERVE_DIR = "serve"
INBOX = "inbox"
WEBHOOK_SOURCE = Path("label-studio-webhook")  # names the source in import errors


class _LoopProgress(Progress):
    """The caller's reporter for the loop, less its "run `segal export`" hint: here labels come by webhook."""

    def __init__(self, inner: Progress):
        self.inner = inner

    def track(self, iterable, total=None, description=""):
        return self.inner.track(iterable, total=total, description=description)

    def log(self, event: str, **fields) -> None:
        if event != "awaiting_labels":
            self.inner.log(event, **fields)

    def warn(self, message: str) -> None:
        self.inner.warn(message)


class NotReady(Exception):
    """No trained network yet: the first cycle is still training."""


@dataclass(frozen=True)
class Snapshot:
    """The network predictions come from, and its cycle's scores; replaced whole after a retraining."""

    cycle: int
    model: nn.Module
    scores: dict[int, float]  # pool index -> label-first acquisition score
    version: str


def serve_budgets(done: list[int], step: int, size: int) -> list[int]:
    """``done`` (the budgets reached so far) then steps of ``step`` up to the pool, the last one clipped."""
    out = list(done)
    while out[-1] < size:
        out.append(min(out[-1] + step, size))
    return out


class Backend:
    def __init__(self, run_dir: Path, *, retrain_every: int | None = None, progress: Progress | None = None,
                 say: Callable[[str], None] | None = None):
        run = open_run(run_dir)
        recipe = run.recipe
        if recipe.task != "segmentation":
            raise UserError("segal serve is for segmentation runs", path=run.dir,
                            fix="for classification, label the ids in the last queries.json and `segal import`")
        if recipe.active.oracle != "human":
            raise UserError("this run labels itself (active.oracle: simulated)", path=run.dir / "recipe.yaml",
                            fix="start the run with `segal acquire RECIPE --oracle human`, then serve it")
        if recipe.active.unit == "region":
            raise UserError("segal serve labels whole images; this run acquires regions (active.unit: region)",
                            path=run.dir / "recipe.yaml", fix="use `segal export` and `segal import` for region-level runs")
        if not run.state_path.exists():
            raise UserError("the run has not started", path=run.dir,
                            fix="run `segal acquire RECIPE --oracle human` first: it trains cycle 0 and waits for labels")
        run.take_lock()  # the one writer, for as long as the server runs
        try:
            remove_crash_leftovers(run.dir)
            self.run = run
            self.pool = run.pool
            self.classes = self.pool.classes
            self.ids = {self.pool.image_id(i): i for i in range(len(self.pool))}
            state = run.load_state()
            self.step = int(retrain_every or recipe.serve.retrain_every or self._budget_step(state))
            if self.step < 1:
                raise UserError("--retrain-every must be at least 1", fix="e.g. --retrain-every 10")
            a = recipe.active  # plan in steps of retrain_every up to the pool (see the module doc)
            a.initial, a.budget, a.cycles, a.final = state.budgets[0], self.step, None, state.size
            self.progress = _LoopProgress(progress or Progress())
            self._say = say or (lambda message: None)
            self.inbox = run.dir / SERVE_DIR / INBOX
            self.inbox.mkdir(parents=True, exist_ok=True)
            self._lock = threading.RLock()  # the inbox, the labeled sets and state flips
            self._predict_lock = threading.Lock()  # one forward pass at a time on shared cores
            self._labeled = set(state.labeled_indices().tolist())
            self._human = set(state.human)
            self._drop_committed()
            self._snapshot = self._load_snapshot(state, compute=state.stage in ("await_labels", "done"))
            self.last_error: str | None = None
            self._cv = threading.Condition()
            self._requested = self._handled = 0
            self._busy = self._stopping = False
            self._thread = threading.Thread(target=self._work, name="segal-retrain", daemon=True)
        except BaseException:
            run.close()
            raise

    # ------------------------------------------------------------------ lifetime
    def start(self) -> Backend:
        self._thread.start()
        self._poke()  # finish an interrupted retraining, or commit labels that were waiting
        return self

    def close(self, wait: bool = True) -> None:
        """Stop the retrainer (after its current job when ``wait``) and release the run."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if wait and self._thread.is_alive():
            self._thread.join()
        self.run.close()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every label so far has been handled (committed and retrained, if due)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._handled == self._requested and not self._busy, timeout)

    # ------------------------------------------------------------------ protocol
    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def version(self) -> str:
        snap = self._snapshot
        return snap.version if snap is not None else f"{self.run.recipe.name}-untrained"

    def health(self) -> dict:
        snap = self._snapshot
        return {"status": "UP", "model_class": "segal", "model_version": self.version,
                "cycle": None if snap is None else snap.cycle, "labels_waiting": len(self._waiting()),
                "retrain_every": self.step, "retraining": self._busy, "last_error": self.last_error}

    def setup(self, payload: dict) -> dict:
        brush_target(payload.get("schema"), self.classes, "/setup")
        return {"model_version": self.version}

    def predict(self, payload: dict) -> dict:
        tasks = tasks_of(payload)
        target = brush_target(payload.get("label_config"), self.classes, "/predict")
        snap = self._snapshot
        if snap is None:
            raise NotReady("the first network is still training")
        indices = [self.ids.get(self._image_id(task) or "") for task in tasks]
        wanted = sorted({i for i in indices if i is not None})
        with self._predict_lock:
            masks = dict(predict_masks(snap.model, self.pool, wanted, compute=self.run.compute))
        results = []
        for task, index in zip(tasks, indices, strict=True):
            if index is None:
                self._say(f"predict: task {task.get('id')} is not an image of this run's pool: no prediction")
                results.append({"result": [], "model_version": snap.version})
                continue
            image_id = self.pool.image_id(index)
            result: dict[str, Any] = {"result": brush_result(masks[index], self.classes, target, image_id), "model_version": snap.version}
            if index not in self._labeled and index in snap.scores:
                result["score"] = snap.scores[index]
            results.append(result)
        return {"results": results}

    def import_annotation(self, payload: dict) -> dict:
        """A webhook event: an annotation becomes a label (inbox, or ``labels/`` for one already imported)."""
        action = payload.get("action")
        if action not in ANNOTATION_ACTIONS:
            return {"status": "ignored", "action": action}
        task = annotated_task(payload)
        where = f"{WEBHOOK_SOURCE} (task {task.get('id')})"
        image_id = self._image_id(task)
        if image_id is None or image_id not in self.ids:
            raise UserError(f"image {image_id!r} is not in this run's pool", path=where,
                            fix="annotate the tasks written by `segal serve RUN --write-tasks DIR`")
        index = self.ids[image_id]
        with self._lock:
            if index in self._labeled and index not in self._human:
                raise UserError(f"image {image_id!r} is labeled already, by the dataset's own mask", path=where,
                                fix="annotate an image that is not labeled yet")
            height, width = self.pool.load_image(index).shape[:2]
            masks = load_tasks(WEBHOOK_SOURCE, [task], self.classes, {image_id: (height, width)})
            if image_id not in masks:  # a skipped (cancelled) task carries no label
                return {"status": "ignored", "id": image_id, "reason": "skipped"}
            ok, png = cv2.imencode(".png", np.ascontiguousarray(masks[image_id]))
            if not ok:
                raise UserError(f"cannot encode the mask of {image_id}", path=where)
            relabel = index in self._human  # trained on already: the next retraining uses the new mask
            atomic_write_bytes((self.run.labels_dir if relabel else self.inbox) / f"{image_id}.png", png.tobytes())
            waiting = len(self._waiting())
        self.run.log("serve_label", id=image_id, action=action, relabel=relabel, waiting=waiting)
        self._poke()
        return {"status": "imported", "id": image_id, "labels_waiting": waiting, "retrain_every": self.step}

    # ------------------------------------------------------------------ labels
    def _image_id(self, task: dict) -> str | None:
        """The pool id a task stands for, as ``segal import`` maps it (segal_id, else the file name)."""
        return task_id(task, cast("dict[str, tuple[int, int]]", self.ids))  # only membership is looked up

    def _waiting(self) -> list[int]:
        """Pool indices with a label in the inbox, oldest first."""
        files = sorted(self.inbox.glob("*.png"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [self.ids[p.stem] for p in files if p.stem in self.ids and self.ids[p.stem] not in self._labeled]

    def _drop_committed(self) -> None:
        """Inbox copies of labels a killed commit had already written to the state."""
        for path in self.inbox.glob("*.png"):
            if path.stem in self.ids and self.ids[path.stem] in self._labeled:
                path.unlink()

    def _commit(self, state: PoolState, indices: list[int]) -> None:
        """Label ``indices`` in cycle k+1: masks into ``labels/``, then the state, then the inbox empties."""
        ids = [self.pool.image_id(i) for i in indices]
        for image_id in ids:
            atomic_write_bytes(self.run.labels_dir / f"{image_id}.png", (self.inbox / f"{image_id}.png").read_bytes())
        done = state.budgets[: state.cycle + 1]
        state.pending = []  # the strategy's batch is superseded by what the annotators labeled
        budgets = serve_budgets(done + [done[-1] + len(indices)], self.step, state.size)
        plan = self.run.new_state().budgets  # what the loop would extend an aligned plan to: keep to it
        state.budgets = plan if plan[: state.cycle + 2] == budgets[: state.cycle + 2] else budgets
        state.human.extend(indices)
        state.add_labeled(indices, cycle=state.cycle + 1)
        state.cycle += 1
        state.stage = "train"
        self.run.save_state(state)  # the commit point
        self._labeled.update(indices)
        self._human.update(indices)
        for image_id in ids:
            (self.inbox / f"{image_id}.png").unlink(missing_ok=True)
        self.run.log("imported", count=len(ids), source="label-studio", cycle=state.cycle)
        self._say(f"committed {len(ids)} new labels: retraining cycle {state.cycle}")

    # ------------------------------------------------------------------ retraining
    def _poke(self) -> None:
        with self._cv:
            self._requested += 1
            self._cv.notify_all()

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._requested > self._handled or self._stopping)
                if self._stopping:
                    return
                target, self._busy = self._requested, True
            try:
                while self._advance():
                    pass
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 — the server keeps predicting with the last network
                self.last_error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                self.run.log("serve_error", error=self.last_error)
                self._say(f"retraining failed: {self.last_error}")
                if not isinstance(exc, UserError):
                    traceback.print_exc()
            finally:
                with self._cv:
                    self._handled, self._busy = target, False
                    self._cv.notify_all()

    def _advance(self) -> bool:
        """One job: resume an unfinished cycle, or commit waiting labels and retrain; False if none is due."""
        if self._stopping:
            return False
        with self._lock:
            state = self.run.load_state()
            if state.stage in ("await_labels", "done"):
                waiting = self._waiting()
                if len(waiting) < self.step:
                    return False
                self._commit(state, waiting)
        ActiveLoop(self.run, self.progress).run_loop()
        state = self.run.load_state()
        snapshot = self._load_snapshot(state, compute=True)
        self._snapshot = snapshot
        self.run.log("serve_model", version=snapshot.version if snapshot else None, cycle=state.cycle)
        self._say(f"predicting with {self.version} ({len(snapshot.scores) if snapshot else 0} images scored)")
        return True

    def _load_snapshot(self, state: PoolState, compute: bool) -> Snapshot | None:
        """The newest trained network of the run, with its cycle's scores (computed if ``compute``)."""
        trained = [c for c in range(state.cycle, -1, -1) if (self.run.cycle_dir(c) / "task.pt").exists()]
        if not trained:
            return None
        cycle = trained[0]
        model = self.run.load_task_model(cycle).to(self.run.device).eval()
        scores = load_scores(self.run, cycle)
        if scores is None:
            if compute and cycle == state.cycle:
                scores = compute_scores(self.run, state, cycle, model)
            else:  # until the cycle is scored: the scores its acquisition recorded
                scores = acquisition_scores(self.run, cycle)  # label-first, as served
        return Snapshot(cycle, model, scores, f"{self.run.recipe.name}-cycle-{cycle}")

    @staticmethod
    def _budget_step(state: PoolState) -> int:
        c = state.cycle
        if c + 1 < len(state.budgets):
            return state.budgets[c + 1] - state.budgets[c]
        return state.budgets[c] - state.budgets[c - 1] if c > 0 else max(1, state.budgets[0])
