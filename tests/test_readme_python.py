"""The README's "Use from Python" blocks run as written: a loop on the demo recipe (its pool made
smaller) and VAAL on a folder of images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text()
    section = re.search(r"^## Use from Python\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README has no '## Use from Python' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert len(blocks) == 2, blocks
    return blocks


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with recipes/demo.yaml (the demo with a 60-image pool), my_images/ and labeled.txt."""
    demo = yaml.safe_load((README.parent / "recipes" / "demo.yaml").read_text())
    demo["data"]["options"] = {"n_train": 60, "n_test": 16}
    demo["active"].update(initial=6, budget=6)
    demo["device"] = "cpu"
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "demo.yaml").write_text(yaml.safe_dump(demo))
    rng = np.random.default_rng(0)
    for k in range(24):
        folder = tmp_path / "my_images" / ("street" if k % 2 else "park")
        folder.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) // (1 + k % 3)
        cv2.imwrite(str(folder / f"{k:03d}.png"), image)
    (tmp_path / "labeled.txt").write_text("".join(f"{'street' if k % 2 else 'park'}/{k:03d}.png\n" for k in range(6)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_loop_block_runs(workdir, capsys):
    loop_block, _ = python_blocks()
    exec(compile(loop_block, "README.md (loop)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["cycle 0", "cycle 1"]
    assert "6 labeled" in printed[0] and "12 labeled" in printed[1]
    metrics = json.loads((workdir / "runs" / "demo-python" / "cycles" / "1" / "metrics.json").read_text())
    assert f"mIoU {100 * metrics['miou']:.1f}" in printed[1]


def test_readme_vaal_block_runs(workdir, capsys):
    _, vaal_block = python_blocks()
    exec(compile(vaal_block, "README.md (select)", "exec"), {})
    chosen = (workdir / "chosen.txt").read_text().split()
    labeled = set((workdir / "labeled.txt").read_text().split())
    assert len(chosen) == 10 == len(set(chosen)) and not labeled & set(chosen)
    assert all((workdir / "my_images" / c).is_file() for c in chosen)
    written = json.loads((workdir / "chosen.txt.json").read_text())
    assert written["strategy"] == "vaal" and not written["initial_random_set"]
    assert f"discriminator AUROC {written['diagnostics']['auroc']}" in capsys.readouterr().out
