import pytest
import torch

import tests.tiny  # noqa: F401
from segal.config import TrainConfig
from segal.device import Compute
from segal.engine import evaluate, lr_factor, train
from segal.errors import UserError
from segal.models import MODELS
from segal.progress import Progress
from tests.tiny import TinySeg

CPU32 = Compute(image_size=[32, 32])


class StopAfterFirstEpoch(Progress):
    def log(self, event, **fields):
        if event == "train_epoch":
            raise KeyboardInterrupt


def fresh_model():
    torch.manual_seed(0)
    return MODELS.get("deeplabv3plus")(3, encoder="resnet18")


def test_training_resumes_to_identical_weights(tmp_path):
    data = TinySeg(16, salt=0)
    cfg = TrainConfig(epochs=2, batch_size=4, amp="off")
    indices = list(range(12))
    reference = fresh_model()
    train(reference, data, indices, cfg, compute=CPU32, seed=3)

    ckpt = tmp_path / "train_state.pt"
    interrupted = fresh_model()
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, data, indices, cfg, compute=CPU32, seed=3,
              checkpoint=ckpt, progress=StopAfterFirstEpoch())
    assert ckpt.exists()
    resumed = fresh_model()  # a new process starts from scratch and finds the checkpoint
    result = train(resumed, data, indices, cfg, compute=CPU32, seed=3, checkpoint=ckpt)
    assert result.steps == 6
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_checkpoint_from_another_model_is_user_error(tmp_path):
    data = TinySeg(8, salt=0)
    ckpt = tmp_path / "train_state.pt"
    cfg = TrainConfig(epochs=1, batch_size=4, amp="off")
    train(fresh_model(), data, range(8), cfg, compute=CPU32, seed=0, checkpoint=ckpt)
    torch.manual_seed(0)
    other = MODELS.get("deeplabv3plus")(5, encoder="resnet18")
    with pytest.raises(UserError, match="does not fit this model"):
        train(other, data, range(8), cfg, compute=CPU32, seed=0, checkpoint=ckpt)


def test_corrupt_checkpoint_is_user_error(tmp_path):
    ckpt = tmp_path / "train_state.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        train(fresh_model(), TinySeg(8, 0), range(8), TrainConfig(epochs=1, batch_size=4), compute=CPU32,
              seed=0, checkpoint=ckpt)


def test_schedules():
    assert lr_factor("poly", 0, 100) == 1.0 and lr_factor("poly", 100, 100) == 0.0
    assert lr_factor("step", 60, 100) == pytest.approx(0.1) and lr_factor("step", 80, 100) == pytest.approx(0.01)
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)


def test_evaluate_perfect_model_scores_one():
    data = TinySeg(6, salt=1)

    class Oracle(torch.nn.Module):
        def forward(self, x):  # recover the mask from the image colours
            red, green = x[:, 0] > 1.0, x[:, 1] > 1.0
            out = torch.zeros(x.shape[0], 3, *x.shape[2:])
            out[:, 0] = 1
            out[:, 1][red] = 2
            out[:, 2][green] = 3
            return out

    metrics = evaluate(Oracle(), data, compute=Compute())
    assert metrics["miou"] == pytest.approx(1.0)


def test_resized_cache_matches_direct_resize_and_persists(tmp_path):
    import cv2
    import numpy as np

    from segal.data.cache import ResizedImageCache

    data = TinySeg(6, salt=2, size=40)
    cache = ResizedImageCache(data, (16, 24), tmp_path)
    first = cache.load_image(3)
    expected = cv2.resize(data.load_image(3), (24, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(first, expected)
    assert cache.fill_ratio() == 1 / 6

    class Exploding(TinySeg):
        def load_image(self, i):
            raise AssertionError("the cache must not decode again")

    reopened = ResizedImageCache(Exploding(6, salt=2, size=40), (16, 24), tmp_path)
    np.testing.assert_array_equal(reopened.load_image(3), expected)
    # a different pool (other ids) invalidates the cache
    other = ResizedImageCache(TinySeg(5, salt=9, size=40), (16, 24), tmp_path)
    assert other.fill_ratio() == 0.0


@pytest.mark.parametrize(("interval", "saved_after"), [(1e9, [1, 5]), (0.0, [1, 2, 3, 4, 5])])
def test_checkpoints_after_the_first_and_last_epoch_and_at_most_every_interval(tmp_path, monkeypatch, interval,
                                                                               saved_after):
    import segal.engine as engine

    saves = []
    monkeypatch.setattr(engine, "CHECKPOINT_SECONDS", interval)
    monkeypatch.setattr(engine, "save_checkpoint", lambda path, state: saves.append(state["epoch"]))
    cfg = TrainConfig(epochs=5, batch_size=4, amp="off")  # 4 images: one step per epoch, 5 epochs
    train(fresh_model(), TinySeg(4, salt=0), list(range(4)), cfg, compute=CPU32, seed=3, checkpoint=tmp_path / "t.pt")
    assert saves == saved_after


def test_cpu_time_adds_up_across_a_resume_and_is_unknown_after_an_older_checkpoint(tmp_path, monkeypatch):
    """A cycle killed and resumed reports the CPU of both processes (the benchmarks' time on a shared
    machine); resumed from a checkpoint written before segal counted it, the total is None, not a guess."""
    import itertools
    import shutil

    from segal import engine
    from segal.checkpoint import load_checkpoint, save_checkpoint

    clock = itertools.count(0.0, 1.5)  # a CPU clock that only this test advances
    monkeypatch.setattr(engine.time, "process_time", lambda: next(clock))
    data, cfg, indices = TinySeg(16, salt=0), TrainConfig(epochs=2, batch_size=4, amp="off"), list(range(12))
    ckpt = tmp_path / "train_state.pt"
    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(), data, indices, cfg, compute=CPU32, seed=3, checkpoint=ckpt, progress=StopAfterFirstEpoch())
    before_kill = load_checkpoint(ckpt)["cpu_seconds"]
    assert before_kill > 0
    shutil.copy(ckpt, tmp_path / "old.pt")
    result = train(fresh_model(), data, indices, cfg, compute=CPU32, seed=3, checkpoint=ckpt)
    assert result.cpu_seconds is not None and result.cpu_seconds > before_kill

    old = load_checkpoint(tmp_path / "old.pt")
    del old["cpu_seconds"]
    save_checkpoint(tmp_path / "older.pt", old)
    assert train(fresh_model(), data, indices, cfg, compute=CPU32, seed=3, checkpoint=tmp_path / "older.pt").cpu_seconds is None
