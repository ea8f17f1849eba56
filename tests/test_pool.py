import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segal.errors import UserError
from segal.fileio import atomic_write_bytes
from segal.pool import PoolState


def make_state(size=20):
    state = PoolState(size=size, budgets=[4, 6, 8], seed=0, pool_fingerprint="abc")
    state.add_labeled([3, 1, 7, 9], cycle=0)
    return state


def test_round_trip(tmp_path):
    state = make_state()
    state.stage = "acquire"
    state.save(tmp_path / "state.json")
    loaded = PoolState.load(tmp_path / "state.json")
    assert loaded == state
    assert loaded.labeled_indices().tolist() == [1, 3, 7, 9]
    assert len(loaded.unlabeled_indices()) == 16


def test_pending_then_labeled():
    state = make_state()
    state.add_pending([0, 2])
    assert 0 not in state.unlabeled_indices() and state.pending == [0, 2]
    state.cycle = 1
    state.add_labeled([0, 2], cycle=1)
    assert state.pending == [] and state.num_labeled == 6
    with pytest.raises(ValueError):
        state.add_labeled([0], cycle=1)
    with pytest.raises(ValueError):
        state.add_pending([3])


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    make_state().save(path)
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"{half")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp litter


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["labeled"]["0"].append(3), "labeled twice"),
        (lambda d: d["labeled"]["0"].append(99), "outside the pool"),
        (lambda d: d.update(stage="dancing"), "unknown stage"),
        (lambda d: d.update(pending=[1]), "both pending and labeled"),
        (lambda d: d["labeled"].update({"2": [5]}), "future cycle"),
        (lambda d: d["labeled"]["0"].pop(), "expects 4"),
        (lambda d: d.pop("budgets"), "malformed"),
    ],
)
def test_hand_edited_inconsistent_state_is_refused(tmp_path, edit, needle):
    path = tmp_path / "state.json"
    make_state().save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=needle) as err:
        PoolState.load(path)
    assert str(path) in str(err.value)


def test_truncated_state_is_refused(tmp_path):
    path = tmp_path / "state.json"
    make_state().save(path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserError, match="not valid JSON"):
        PoolState.load(path)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_transitions_preserve_partition(data):
    size = data.draw(st.integers(5, 60))
    state = PoolState(size=size, budgets=[1, size], seed=0, pool_fingerprint="x")
    for _step in range(data.draw(st.integers(1, 6))):
        unl = state.unlabeled_indices().tolist()
        if not unl:
            break
        chosen = data.draw(st.lists(st.sampled_from(unl), min_size=1, max_size=len(unl), unique=True))
        if data.draw(st.booleans()):
            state.add_pending(chosen)
            state.add_labeled(chosen, cycle=0)
        else:
            state.add_labeled(chosen, cycle=0)
        labeled = set(state.labeled_indices().tolist())
        assert labeled.isdisjoint(state.unlabeled_indices().tolist())
        assert labeled.isdisjoint(state.pending)
        assert len(labeled) + len(state.pending) + len(state.unlabeled_indices()) == size
        assert len(labeled) == state.num_labeled  # nothing duplicated


def test_imagenet_sized_pool_round_trips(tmp_path):
    n = 1_281_167
    state = PoolState(size=n, budgets=[n // 10], seed=0, pool_fingerprint="x")
    state.add_labeled(np.random.default_rng(0).choice(n, n // 10, replace=False), cycle=0)
    state.save(tmp_path / "s.json")
    loaded = PoolState.load(tmp_path / "s.json")
    assert loaded.num_labeled == n // 10
    assert Path(tmp_path / "s.json").stat().st_size < 2_000_000
    np.testing.assert_array_equal(loaded.labeled_indices(), state.labeled_indices())


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    """Reports and exports must be readable by another user (a Label Studio server) as open() would make them."""
    import os

    from segal.fileio import atomic_write_bytes

    mask = os.umask(0o022)
    os.umask(mask)  # the process's umask, which the writer read at import
    atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask != 0o600
