"""`segal select`: VAAL on a bare folder of images, with no task network, masks or run directory."""

from __future__ import annotations

import json

import cv2
import numpy as np

from segal.cli import main


def _folder(tmp_path, n=24):
    root = tmp_path / "imgs"
    for i in range(n):
        sub = root / ("a" if i < n // 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8) if i < n // 2 else np.full((40, 48, 3), 220, np.uint8)
        cv2.imwrite(str(sub / f"{i:03d}.png"), img)
    (root / "notes.txt").write_text("not an image")
    return root


def test_select_vaal_on_a_folder(tmp_path):
    root = _folder(tmp_path)
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("a/000.png\na/001.png\n# a comment\na/002.png\n")
    out = tmp_path / "chosen.txt"
    code = main(["select", str(root), "--budget", "5", "--labeled", str(labeled), "--out", str(out), "--quiet",
                 "--device", "cpu", "--work-dir", str(tmp_path / "work"),
                 "--param", "image_size=32", "--param", "z_dim=8", "--param", "width=8", "--param", "batch_size=8",
                 "--param", "steps=3"])
    assert code == 0
    chosen = out.read_text().split()
    assert len(chosen) == 5 == len(set(chosen)) and not {"a/000.png", "a/001.png", "a/002.png"} & set(chosen)
    detail = json.loads((tmp_path / "chosen.txt.json").read_text())
    assert detail["ids"] == chosen and detail["pool"] == 24 and "auroc" in detail["diagnostics"]
    assert (tmp_path / "work" / "vaal.pt").exists()


def test_select_refuses_bad_input(tmp_path, capsys):
    root = _folder(tmp_path, n=6)
    out = tmp_path / "chosen.txt"
    bad_ids = tmp_path / "labeled.txt"
    bad_ids.write_text("nope.png\n")
    assert main(["select", str(root), "--budget", "2", "--labeled", str(bad_ids), "--out", str(out)]) == 2
    assert "nope.png" in capsys.readouterr().err
    assert main(["select", str(root), "--budget", "7", "--out", str(out)]) == 2
    assert main(["select", str(root), "--budget", "2", "--strategy", "entropy", "--out", str(out)]) == 2
    assert main(["select", str(root), "--budget", "2", "--param", "nosuchkey=1", "--out", str(out)]) == 2
    assert main(["select", str(tmp_path / "missing"), "--budget", "2", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["select", str(root), "--budget", "2", "--strategy", "random", "--out", str(out)]) == 0
    assert len(out.read_text().split()) == 2


def test_select_without_a_labeled_set_gives_a_random_initial_set(tmp_path, capsys):
    """The README's `segal select my_images/ --budget 100 --out chosen.txt` crashed (num_samples=0)."""
    root = _folder(tmp_path)
    out = tmp_path / "chosen.txt"
    assert main(["select", str(root), "--budget", "5", "--out", str(out), "--device", "cpu"]) == 0
    chosen = out.read_text().split()
    assert len(chosen) == 5 == len(set(chosen))
    detail = json.loads((tmp_path / "chosen.txt.json").read_text())
    assert detail["initial_random_set"] is True and detail["labeled"] == 0
    captured = capsys.readouterr()
    assert "random initial set" in captured.err and "at random" in captured.out
    main(["select", str(root), "--budget", "5", "--out", str(tmp_path / "again.txt"), "--device", "cpu"])
    assert (tmp_path / "again.txt").read_text() == out.read_text()  # seeded
