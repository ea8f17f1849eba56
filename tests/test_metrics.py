import numpy as np
import pytest
import torch

from segal.metrics import ConfusionMatrix


def test_miou_hand_computed():
    # 2×3 image, classes 0..2, one ignore pixel.
    target = torch.tensor([[0, 0, 1], [2, 255, 1]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(target, pred)
    # class 0: tp 1, fp 1 (pixel (1,2)), fn 1 → 1/3 ; class 1: tp 1, fp 1, fn 1 → 1/3 ; class 2: tp 1 → 1/1
    np.testing.assert_allclose(cm.iou(), [1 / 3, 1 / 3, 1.0])
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)
    assert cm.accuracy() == pytest.approx(3 / 5)


def test_absent_class_is_nan_and_excluded():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    iou = cm.iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.miou() == pytest.approx((0.5 + 0.5) / 2)


def test_against_bruteforce_over_many_images():
    rng = np.random.default_rng(0)
    n = 5
    cm = ConfusionMatrix(n)
    inter = np.zeros(n)
    union = np.zeros(n)
    for _ in range(7):  # accumulated over the split, not averaged per image
        t = rng.integers(0, n, size=(13, 17))
        t[rng.random(t.shape) < 0.1] = 255
        p = rng.integers(0, n, size=(13, 17))
        cm.update(torch.from_numpy(t), torch.from_numpy(p))
        valid = t != 255
        for c in range(n):
            inter[c] += np.sum((t == c) & (p == c) & valid)
            union[c] += np.sum(((t == c) | (p == c)) & valid)
    np.testing.assert_allclose(cm.iou(), inter / union)
