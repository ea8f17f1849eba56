"""UserError stays one line, even when PyTorch re-raises it from a DataLoader worker."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from segal.errors import UserError


class _BadFile(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        raise UserError("image is empty (0 bytes)", path="data/img/a.png", fix="re-copy the file")


def test_message_and_fix_joined_on_one_line():
    assert str(UserError("bad", path="r.yaml", fix="do x")) == "r.yaml: bad — fix: do x"


def test_error_from_a_loader_worker_keeps_its_one_line():
    loader = DataLoader(_BadFile(), batch_size=1, num_workers=1)
    with pytest.raises(UserError) as caught:
        next(iter(loader))
    assert str(caught.value) == "data/img/a.png: image is empty (0 bytes) — fix: re-copy the file"
