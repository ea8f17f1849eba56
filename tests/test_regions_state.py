import io
import json
import shutil

import numpy as np
import pytest

from segal.errors import UserError
from segal.pool import PoolState
from segal.regions.state import PENDING, RegionLabels, load_region_labels, save_region_state

# 4 images with 3, 0, 4 and 2 regions: image 1 has none (empty offsets span).
OFFSETS = np.array([0, 3, 3, 7, 9], dtype=np.int64)
AREA = np.array([10, 20, 30, 5, 6, 7, 8, 100, 200], dtype=np.int32)


def make_labels():
    labels = RegionLabels.empty(OFFSETS)
    labels.add_labeled([0, 4, 5], cycle=0)  # image 0 region 0, image 2 regions 1 and 2
    labels.add_pending([8])  # image 3 region 1
    labels.add_labeled([2], cycle=1)  # image 0 region 2
    return labels


def make_state(cycle=1):
    return PoolState(size=4, budgets=[1, 2, 3], seed=0, pool_fingerprint="abc", cycle=cycle, stage="train")


def test_views_match_hand_computed_values():
    labels = make_labels()
    assert labels.num_images == 4 and labels.num_regions == 9
    assert labels.labeled_regions(0).tolist() == [0, 2]
    assert labels.labeled_regions(1).tolist() == []
    assert labels.labeled_regions(2).tolist() == [1, 2]
    assert labels.labeled_regions(3).tolist() == []
    assert labels.all_labeled_regions().tolist() == [0, 2, 4, 5]
    assert labels.unlabeled_regions().tolist() == [1, 3, 6, 7]
    assert labels.pending_regions().tolist() == [8]
    assert labels.images_pending().tolist() == [3]
    assert labels.images_touched().tolist() == [0, 2]
    assert labels.images_touched(through_cycle=0).tolist() == [0, 2]
    assert labels.touched_by_cycle() == {0: [0, 2]}  # image 0 first touched in cycle 0, not 1
    assert labels.labeled_counts().tolist() == [3, 1]
    assert labels.labeled_counts(4).tolist() == [3, 1, 0, 0]
    assert labels.labeled_pixels(AREA) == 10 + 30 + 6 + 7
    assert labels.labeled_pixels(AREA, through_cycle=0) == 10 + 6 + 7
    assert labels.num_labeled == 4 and labels.num_pending == 1
    assert labels.image_of([0, 2, 3, 6, 7, 8]).tolist() == [0, 0, 2, 2, 3, 3]
    assert labels.regions_of([2, 1, 0]).tolist() == [3, 4, 5, 6, 0, 1, 2]
    region_map = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(labels.labeled_pixel_mask(2, region_map), [[False, True], [True, False]])
    np.testing.assert_array_equal(labels.pending_pixel_mask(3, np.array([[0, 1]])), [[False, True]])


def test_transitions_refuse_what_no_segal_step_does():
    labels = make_labels()
    with pytest.raises(ValueError, match="already labeled"):
        labels.add_labeled([1, 4], cycle=1)
    with pytest.raises(ValueError, match="duplicate"):
        labels.add_labeled([1, 1], cycle=1)
    with pytest.raises(ValueError, match="outside the pool"):
        labels.add_labeled([9], cycle=1)
    with pytest.raises(ValueError, match="not unlabeled"):
        labels.add_pending([8])  # already pending
    with pytest.raises(ValueError, match="not unlabeled"):
        labels.add_pending([0])  # labeled
    with pytest.raises(ValueError, match="cycle"):
        labels.add_labeled([1], cycle=-1)
    assert labels == make_labels()  # a refused step changes nothing
    labels.add_labeled([8], cycle=1)  # the annotator's labels of a pending region arrive
    assert labels.pending_regions().tolist() == [] and labels.status[8] == 1


def test_whole_images_are_the_image_level_run():
    state = PoolState(size=10, budgets=[3, 5], seed=0, pool_fingerprint="x", cycle=1)
    state.add_labeled([7, 2, 4], cycle=0)
    state.add_labeled([0], cycle=1)
    state.add_pending([9])
    labels = RegionLabels.from_image_state(state)
    assert labels.offsets.tolist() == list(range(11))
    assert labels.images_touched().tolist() == state.labeled_indices().tolist() == [0, 2, 4, 7]
    assert labels.all_labeled_regions().tolist() == [0, 2, 4, 7]
    assert labels.unlabeled_regions().tolist() == state.unlabeled_indices().tolist()
    assert labels.pending_regions().tolist() == [9]
    assert labels.labeled_counts().tolist() == [3, 1]
    assert labels.touched_by_cycle() == {0: [2, 4, 7], 1: [0]}
    assert RegionLabels.whole_images(3).regions_of([1]).tolist() == [1]


def test_round_trip_through_state_json(tmp_path):
    path = tmp_path / "state.json"
    state, labels = make_state(), make_labels()
    save_region_state(state, labels, path)
    raw = json.loads(path.read_text())
    assert raw["regions"]["num_regions"] == 9 and raw["regions"]["labeled"] == [3, 1] and raw["regions"]["pending"] == 1
    assert raw["labeled"] == {"0": [0, 2]} and raw["num_labeled"] == 2  # the images touched
    loaded_state = PoolState.load(path)
    assert loaded_state == state
    loaded = load_region_labels(loaded_state, path, OFFSETS)
    assert loaded == labels
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["state.json", raw["regions"]["file"]])
    save_region_state(loaded_state, loaded, path)  # unchanged labels: the same file, the same bytes
    assert json.loads(path.read_text()) == raw


def test_a_kill_between_the_two_writes_loads_the_old_consistent_state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    state, labels = make_state(), make_labels()
    save_region_state(state, labels, path)
    old_json = path.read_bytes()
    labels.add_labeled([1, 6], cycle=2)
    state.cycle = 2

    def killed(self, p):
        raise KeyboardInterrupt  # stands for SIGKILL: the region file is written, state.json is not

    monkeypatch.setattr(PoolState, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_region_state(state, labels, path)
    monkeypatch.undo()
    assert path.read_bytes() == old_json and len(list(tmp_path.glob("regions-labels-*.npy"))) == 2
    loaded_state = PoolState.load(path)
    assert loaded_state.cycle == 1
    assert load_region_labels(loaded_state, path, OFFSETS) == make_labels()
    save_region_state(loaded_state, make_labels(), path)  # the resumed run saves: the orphan goes
    assert len(list(tmp_path.glob("regions-labels-*.npy"))) == 1


def test_a_kill_before_the_old_file_is_deleted_loads_the_new_state(tmp_path):
    path = tmp_path / "state.json"
    state, labels = make_state(), make_labels()
    save_region_state(state, labels, path)
    old = next(tmp_path.glob("regions-labels-*.npy"))
    shutil.copy(old, tmp_path / "kept")
    labels.add_labeled([1], cycle=1)
    save_region_state(state, labels, path)
    assert not old.exists()
    shutil.copy(tmp_path / "kept", old)  # as if the kill came before step 3
    assert load_region_labels(PoolState.load(path), path, OFFSETS) == labels


def _rewrite_labels(path, change, fix_hash=True):
    """Hand-edit the region labels file (and, like a careful vandal, its sha256 in state.json)."""
    import hashlib

    raw = json.loads(path.read_text())
    npy = path.parent / raw["regions"]["file"]
    status = np.load(npy)
    changed = change(status)  # edits in place, or returns other contents (an array, or bytes)
    buffer = io.BytesIO()
    np.save(buffer, status if changed is None else changed)
    data = changed if isinstance(changed, bytes) else buffer.getvalue()
    npy.write_bytes(data)
    if fix_hash:
        raw["regions"]["sha256"] = hashlib.sha256(data).hexdigest()
        path.write_text(json.dumps(raw))
    return npy


def _edit_state(path, change):
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda p: _rewrite_labels(p, lambda s: s.__setitem__(1, 0), fix_hash=False), "do not match the sha256"),
        (lambda p: _rewrite_labels(p, lambda s: s.__setitem__(1, -3)), "holds the value -3"),
        (lambda p: _rewrite_labels(p, lambda s: s.__setitem__(1, 5)), "labeled in cycle 5, after the run's cycle 1"),
        (lambda p: _rewrite_labels(p, lambda s: s.__setitem__(1, 0)), "state.json records [3, 1] and 1"),
        (lambda p: _rewrite_labels(p, lambda s: s.__setitem__(8, -1)), "state.json records [3, 1] and 1"),
        (lambda p: _rewrite_labels(p, lambda s: s.astype(np.int32)), "hold int32 (9,), expected int16 (9,)"),
        (lambda p: _rewrite_labels(p, lambda s: s[:-1]), "hold int16 (8,), expected int16 (9,)"),
        (lambda p: _rewrite_labels(p, lambda s: b"not an array"), "are not a .npy array"),
        (lambda p: _edit_state(p, lambda d: d["regions"].update(labeled=[2, 1])), "state.json records [2, 1]"),
        (lambda p: _edit_state(p, lambda d: d["labeled"].update({"0": [0]})), "which images have labeled regions"),
        (lambda p: next(p.parent.glob("regions-labels-*.npy")).unlink(), "file named by state.json is missing"),
    ],
)
def test_hand_edited_region_labels_are_refused(tmp_path, damage, needle):
    path = tmp_path / "state.json"
    save_region_state(make_state(), make_labels(), path)
    damage(path)
    with pytest.raises(UserError) as err:
        load_region_labels(PoolState.load(path), path, OFFSETS)
    message = str(err.value)
    assert needle in message and "regions-labels-" in message and str(tmp_path) in message
    assert "do not edit region labels by hand" in message and "\n" not in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["regions"].update(file="../../elsewhere.npy"), "not one segal writes"),
        (lambda d: d["regions"].pop("maps"), "must hold exactly the keys"),
        (lambda d: d["regions"].update(pending=-1), "whole numbers"),
        (lambda d: d["regions"].update(labeled=[3, 1, 0]), "future cycle"),
        (lambda d: d["regions"].update(num_regions=3), "more labeled and pending regions than the pool holds"),
        (lambda d: d["regions"].update(sha256="abc"), "malformed 'sha256'"),
    ],
)
def test_hand_edited_region_pointer_is_refused_by_the_state_itself(tmp_path, change, needle):
    path = tmp_path / "state.json"
    save_region_state(make_state(), make_labels(), path)
    _edit_state(path, change)
    with pytest.raises(UserError, match="inconsistent state") as err:
        PoolState.load(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_other_region_maps_are_refused(tmp_path):
    path = tmp_path / "state.json"
    save_region_state(make_state(), make_labels(), path)
    with pytest.raises(UserError, match="region maps changed since this run started"):
        load_region_labels(PoolState.load(path), path, np.array([0, 3, 4, 7, 9]))


def test_saving_labels_ahead_of_the_state_is_a_bug_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="after the run's cycle 0"):
        save_region_state(make_state(cycle=0), make_labels(), tmp_path / "state.json")
    assert list(tmp_path.iterdir()) == []


# Written by segal before region runs existed (PoolState.save of an awaiting-labels run with an import).
IMAGE_LEVEL_STATE = (b'{"version":1,"size":12,"budgets":[4,6,8],"seed":3,"pool_fingerprint":"0123456789abcdef",'
                     b'"cycle":1,"stage":"await_labels","num_labeled":6,"pending":[5,11],'
                     b'"labeled":{"0":[3,1,7,9],"1":[0,2]},"human":[2]}\n')


def test_an_image_level_state_loads_and_saves_byte_identically(tmp_path):
    (tmp_path / "old.json").write_bytes(IMAGE_LEVEL_STATE)
    state = PoolState.load(tmp_path / "old.json")
    assert state.regions is None and state.num_labeled == 6 and state.pending == [5, 11]
    state.save(tmp_path / "new.json")
    assert (tmp_path / "new.json").read_bytes() == IMAGE_LEVEL_STATE
    labels = RegionLabels.from_image_state(state)
    assert labels.images_touched().tolist() == [0, 1, 2, 3, 7, 9] and labels.status[5] == PENDING


def test_a_million_regions_stay_small_and_fast(tmp_path):
    """1.28 million regions (ImageNet-sized pool, one region per image or many per image): 2.5 MB on disk."""
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.sort(rng.integers(0, 1_281_167, 1279)), [1_281_167]]).astype(np.int64)
    labels = RegionLabels.empty(offsets)
    labels.add_labeled(rng.choice(labels.num_regions, 50_000, replace=False), cycle=0)
    labels.add_pending(rng.choice(labels.unlabeled_regions(), 1_000, replace=False))
    path = tmp_path / "state.json"
    state = PoolState(size=1280, budgets=[1], seed=0, pool_fingerprint="x")
    save_region_state(state, labels, path)
    assert next(tmp_path.glob("regions-labels-*.npy")).stat().st_size < 2 * labels.num_regions + 200
    loaded = load_region_labels(PoolState.load(path), path, offsets)
    assert loaded == labels and loaded.num_pending == 1_000
