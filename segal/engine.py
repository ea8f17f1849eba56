"""Training and evaluation of the task network.

Training checkpoints at epoch boundaries (model, optimiser, step) and reseeds every epoch from
(seed, epoch), so a run killed mid-training resumes to exactly the weights an uninterrupted run
would have produced.  Checkpoints hold tensors only and are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segal import distributed as dist
from segal.checkpoint import apply_state_dict, load_checkpoint, save_checkpoint
from segal.config import TrainConfig
from segal.crashpoints import crash_point
from segal.data.base import Dataset
from segal.data.loaders import make_loader
from segal.device import Compute, autocast, grad_scaler
from segal.errors import UserError
from segal.metrics import ConfusionMatrix
from segal.progress import Progress
from segal.tracking import NullTracker, Tracker


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    # CPU time of the whole training, resumes included (None where a checkpoint written before segal
    # counted it was resumed): on a shared machine the wall time measures the load, this the work.
    cpu_seconds: float | None = None


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    progress = min(step / max(total, 1), 1.0)
    if schedule == "poly":
        return (1.0 - progress) ** 0.9
    if schedule == "step":  # ÷10 at 50% and 75%, as in common segmentation/classification recipes
        return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def task_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; a batch with none gives 0 (not 0/0 = NaN, which would
    poison the weights) so that every rank of a distributed run still takes the same step."""
    if not bool((target != ignore_index).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index)


# Non-finite losses in a row that a float16 gradient scaler may legitimately skip before we give up.
MAX_SKIPPED_STEPS = 10
# The training state (network + optimiser, ~150 MB for DeepLabV3+ R18) is saved after the first epoch
# of a session, after the last, and otherwise at most every CHECKPOINT_SECONDS: saving it after every
# epoch of a small labeled set cost up to 0.4 s per epoch (a third of the demo's cycle 0).  A resume
# from any epoch boundary gives the same result (each epoch is seeded), so this changes only how much
# work a kill can lose.
CHECKPOINT_SECONDS = 30.0


def diverged(step: int, loss: float) -> UserError:
    return UserError(f"training diverged: the loss is {loss} at step {step}, so no result of this cycle would be valid",
                     fix="lower train.lr in the recipe (or use train.amp: off), then re-run the same command")


def all_void() -> UserError:
    return UserError("the labeled images hold no labelled pixel (every mask is all ignore), so there is nothing to train on",
                     fix="check the masks of the labeled images (255 = ignore) and the class list, then re-run")


def weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def planned_steps(cfg: TrainConfig, num_labeled: int) -> int:
    """Optimiser steps of one cycle: ``train.steps`` when set, else ``epochs`` passes over the labeled
    set with a floor, ``max(min_steps, ceil(epochs × num_labeled / batch_size))``.  Epochs alone make
    the smallest budgets train for too few steps to converge; the floor fixes that while the larger
    budgets still get more steps with more labels."""
    if cfg.steps:
        return cfg.steps
    return max(cfg.min_steps, math.ceil(cfg.epochs * num_labeled / cfg.batch_size), 1)


def cycle_schedule(cfg: TrainConfig, warm: bool) -> TrainConfig:
    """The schedule of one cycle: a warm-started one (``train.reinit: false``, cycle > 0) starts from a
    network that already fits most of its labels, so with ``train.warm_epochs`` it trains
    ``ceil(warm_epochs × labeled / batch_size)`` steps without the from-scratch floor."""
    if not warm or cfg.warm_epochs is None or cfg.steps:
        return cfg
    return dataclasses.replace(cfg, epochs=cfg.warm_epochs, min_steps=0)


def train(
    model: nn.Module,
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray,
    cfg: TrainConfig,
    *,
    compute: Compute,
    seed: int,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
    description: str = "training",
    tracker: Tracker | None = None,
) -> TrainResult:
    """Train ``model`` on ``indices`` of ``dataset``; resumable from ``checkpoint`` (epoch granularity).
    ``tracker`` gets each step's loss and lr, flushed before each checkpoint (so a resume repeats none)."""
    progress, tracker = progress or Progress(), tracker or NullTracker()
    device, amp = compute.device, compute.amp
    indices = np.asarray(indices, dtype=np.int64)
    world = dist.world()
    per_rank = len(indices) // world if world > 1 else len(indices)
    batches_per_epoch = max(1, per_rank // cfg.batch_size) if per_rank > cfg.batch_size else 1
    total_steps = planned_steps(cfg, per_rank)
    epochs = math.ceil(total_steps / batches_per_epoch)
    model.to(device)
    net = model
    if world > 1:  # DistributedDataParallel: each rank trains on its shard of a shared permutation
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(device, amp)
    step, start_epoch, last_loss, labelled_steps = 0, 0, float("nan"), 0
    cpu_before: float | None = 0.0
    if checkpoint is not None and checkpoint.exists():
        saved = load_checkpoint(checkpoint)
        apply_state_dict(model, saved["model"], checkpoint)
        optimizer.load_state_dict(saved["optimizer"])
        step, start_epoch, last_loss = int(saved["step"]), int(saved["epoch"]), float(saved["loss"])
        labelled_steps = int(saved.get("labelled_steps", step))  # older checkpoints: assume all were
        cpu_before = saved.get("cpu_seconds")  # absent from older checkpoints: the total is unknown
    skipped = 0  # consecutive non-finite losses (only a float16 gradient scaler may produce and skip them)
    ignore = dataset.classes.ignore_index
    started = saved_at = time.perf_counter()
    cpu_started = time.process_time()

    def cpu_so_far() -> float | None:
        return None if cpu_before is None else float(cpu_before) + time.process_time() - cpu_started
    # The bar counts optimiser steps, as the schedule and the "trained N steps" log line do.
    bar = iter(progress.track(range(step, total_steps), total=total_steps - step, description=description))
    next(bar, None)  # prime: each later next() marks one finished step
    for epoch in range(start_epoch, epochs):
        torch.manual_seed(seed * 1000003 + epoch)
        epoch_indices = indices
        if world > 1:
            perm = np.random.default_rng([seed, epoch]).permutation(indices)
            epoch_indices = perm[dist.rank() : per_rank * world : world]
        loader = make_loader(
            dataset, epoch_indices, size=compute.image_size, batch_size=cfg.batch_size, train=True, augment=cfg.augment,
            with_targets=True, seed=seed * 1000003 + epoch, num_workers=cfg.num_workers, drop_last=True,
        )
        net.train()
        running = []
        for images, targets, _ in loader:
            if step >= total_steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg.schedule, step, total_steps)
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast(device, amp):
                logits = net(images)
            loss = task_loss(logits, targets, ignore)
            value = loss.item()
            if not math.isfinite(value):  # a diverging lr: stop before NaN reaches the weights or a result
                skipped += 1
                if not scaler.is_enabled() or skipped >= MAX_SKIPPED_STEPS:
                    raise diverged(step, value)
            else:
                skipped = 0
                running.append(value)
                tracker.scalar("train/loss", value, step + 1)
                tracker.scalar("train/lr", optimizer.param_groups[0]["lr"], step + 1)
            labelled_steps += int(bool((targets != ignore).any()))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            next(bar, None)
            crash_point("train.step")
        if running:
            last_loss = float(np.mean(running))
        if not weights_finite(model):
            raise diverged(step, float("nan"))
        if labelled_steps == 0 and step > 0:  # a whole epoch without one labelled pixel: checked before saving
            raise all_void()
        last = step >= total_steps or epoch == epochs - 1
        save = checkpoint is not None and (epoch == start_epoch or last
                                           or time.perf_counter() - saved_at >= CHECKPOINT_SECONDS)
        if save or checkpoint is None:
            tracker.flush()  # before the checkpoint: a resume repeats no logged step
        if save and checkpoint is not None:
            saved_at = time.perf_counter()
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "step": step, "epoch": epoch + 1, "loss": last_loss,
                                         "labelled_steps": labelled_steps, "cpu_seconds": cpu_so_far()})
        progress.log("train_epoch", epoch=epoch, step=step, loss=last_loss)
        if step >= total_steps:
            break
    close = getattr(bar, "close", None)
    if close is not None:  # a generator (the CLI's bar): remove it now, not when it is garbage-collected
        close()
    if step > 0 and not math.isfinite(last_loss):
        raise diverged(step, last_loss)
    return TrainResult(steps=step, final_loss=last_loss, seconds=time.perf_counter() - started,
                       cpu_seconds=cpu_so_far())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    compute: Compute,
    progress: Progress | None = None,
) -> dict:
    """mIoU and per-class IoU (segmentation) or top-1/top-5 accuracy (classification) over a split."""
    progress = progress or Progress()
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    if len(indices) == 0:
        raise UserError("the evaluation split is empty", fix="check data.test_split and the data root")
    indices = dist.shard(indices)  # each rank evaluates its share; the matrices are summed below
    # Segmentation is scored at each mask's own resolution (logits upsampled bilinearly), as the
    # official Cityscapes evaluator does, not on masks shrunk to the network's input size.
    device, amp = compute.device, compute.amp
    loader = make_loader(dataset, indices, size=compute.image_size, batch_size=compute.batch_size, train=False,
                         with_targets=True, num_workers=compute.num_workers,
                         full_size_targets=dataset.task != "classification")
    num_classes = len(dataset.classes)
    cm = ConfusionMatrix(num_classes, dataset.classes.ignore_index)
    top5, seen = 0, 0
    model.to(device).eval()
    for images, targets, _ in progress.track(loader, total=len(loader), description="evaluating"):
        images = images.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        if isinstance(targets, list):  # masks of different sizes in one batch
            for logit, target in zip(logits, targets, strict=True):
                up = F.interpolate(logit[None], size=target.shape[-2:], mode="bilinear", align_corners=False)
                cm.update(target, up.argmax(1).cpu())
            continue
        if logits.shape[-2:] != targets.shape[-2:] and logits.ndim == 4:
            logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        cm.update(targets, logits.argmax(1).cpu())
        if logits.ndim == 2:
            k = min(5, logits.shape[1])
            top5 += (logits.topk(k, dim=1).indices.cpu() == targets[:, None]).any(1).sum().item()
            seen += len(targets)
    cm.matrix = dist.all_reduce_sum(cm.matrix)
    top5, seen = (int(v) for v in dist.all_reduce_sum(torch.tensor([top5, seen])).tolist())
    summary = cm.summary(list(dataset.classes.names))
    if dataset.task == "classification":
        return {"accuracy": summary["pixel_accuracy"], "top5": top5 / max(seen, 1),
                "per_class_accuracy": _per_class_recall(cm, dataset.classes.names)}
    return summary


def _per_class_recall(cm: ConfusionMatrix, names: Sequence[str]) -> dict:
    m = cm.matrix.double().numpy()
    support = m.sum(1)
    return {n: (float(m[i, i] / support[i]) if support[i] else None) for i, n in enumerate(names)}


@torch.no_grad()
def predict_masks(
    model: nn.Module,
    dataset: Dataset,
    indices: Sequence[int] | np.ndarray,
    *,
    compute: Compute,
    batch_size: int = 8,
):
    """Yield ``(pool index, uint8 train-id mask at the image's own size)`` for export.

    Its own small batch and no workers (not ``compute``'s): every mask is kept at full image size."""
    device, amp = compute.device, compute.amp
    model.to(device).eval()
    loader = make_loader(dataset, indices, size=compute.image_size, batch_size=batch_size, train=False,
                         with_targets=False)
    for images, idx in loader:
        with autocast(device, amp):
            logits = model(images.to(device)).float()
        for logit, index in zip(logits, idx.tolist(), strict=True):
            h, w = dataset.load_image(index).shape[:2]
            up = F.interpolate(logit[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            yield index, up.argmax(0).to(torch.uint8).cpu().numpy()
        crash_point("predict.batch")
