"""Confusion-matrix metrics: mIoU and per-class IoU for segmentation, accuracy for classification.

The matrix is accumulated over the whole split (not averaged per image), which is what the
Cityscapes evaluator and every segmentation paper report.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class ConfusionMatrix:
    """Rows are ground truth, columns are predictions; ``ignore_index`` pixels are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        target = target.reshape(-1).to(torch.int64)
        prediction = prediction.reshape(-1).to(torch.int64)
        keep = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        n = self.num_classes
        bad = keep & ((prediction < 0) | (prediction >= n))
        if bad.any():  # would silently land in another class's cell of the flattened matrix
            raise ValueError(f"predictions hold ids outside 0..{n - 1}: {sorted(set(prediction[bad].tolist()))[:8]}")
        counts = torch.bincount(n * target[keep] + prediction[keep], minlength=n * n)
        self.matrix += counts.reshape(n, n).cpu()

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both ground truth and predictions."""
        m = self.matrix.double().numpy()
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0

    def accuracy(self) -> float:
        m = self.matrix.double()
        total = m.sum().item()
        return float(m.diag().sum().item() / total) if total else 0.0

    def summary(self, class_names: list[str] | tuple[str, ...]) -> dict:
        iou = self.iou()
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.accuracy(),
            "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, iou, strict=True)},
        }


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half.

    Computed from ranks (the Mann–Whitney U statistic), so it needs no threshold sweep and no
    extra dependency; ``nan`` when either side is empty.
    """
    pos, neg = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if not len(pos) or not len(neg):
        return float("nan")
    scores = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based ranks, ties averaged
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


WARN_AUROC = 0.05  # without an interval: an AUROC this close to 0.5 is a collapse warning


def auroc_interval(area: float, n_pos: int, n_neg: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Two-sided 95% interval of an AUROC by Hanley & McNeil (1982): ``area ± z·SE``, clipped to [0, 1], with

        SE² = (A(1−A) + (n₊−1)(Q₁−A²) + (n₋−1)(Q₂−A²)) / (n₊ n₋),  Q₁ = A/(2−A),  Q₂ = 2A²/(1+A).

    A closed form (no resampling, so the same on every rank and on resume); it is slightly
    conservative near 0.5 and degenerates to a point at A = 0 or 1.  ``(nan, nan)`` without samples.
    """
    if not n_pos or not n_neg or not math.isfinite(area):
        return float("nan"), float("nan")
    a = float(area)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    half = z * math.sqrt(max(var, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def collapse_warning(cycle: int, diagnostics: dict) -> str | None:
    """A warning when the discriminator cannot be told from chance: its 95% AUROC interval holds 0.5
    (or, for a strategy that reports no interval, the AUROC is within ``WARN_AUROC`` of it)."""
    auroc, interval = diagnostics.get("auroc"), diagnostics.get("auroc_ci")
    if auroc is None:
        return None
    if interval is not None:
        if interval[0] <= 0.5 <= interval[1]:
            return (f"cycle {cycle}: discriminator AUROC {auroc:.3f}, 95% interval [{interval[0]:.3f}, "
                    f"{interval[1]:.3f}] holds 0.5 — VAAL cannot be told from random here")
        return None
    if abs(auroc - 0.5) < WARN_AUROC:
        return f"cycle {cycle}: discriminator AUROC {auroc:.3f} ≈ 0.5 — VAAL is close to random here"
    return None


