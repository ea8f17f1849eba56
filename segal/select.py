"""Task-agnostic selection on a bare folder of images: VAAL (or random) with no task network, no
masks and no run directory — the proof that VAAL's acquisition never needs the task model.

With no labeled set yet (no ``--labeled``), VAAL has nothing to contrast the pool with: its
discriminator learns "labeled vs unlabeled".  The paper starts every experiment from a *random*
initial labeled set, so that is what ``segal select`` returns then (seeded, and said so on the
terminal and in the ``.json``); label it, and the next ``select --labeled`` runs VAAL proper.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segal.config import parse_yaml
from segal.data import DATASETS
from segal.device import Compute, resolve_device
from segal.errors import UserError
from segal.fileio import atomic_write_bytes, atomic_write_json
from segal.progress import Progress
from segal.strategies import STRATEGIES, make_strategy
from segal.strategies.context import build_context


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError("labeled-id file not found", path=path, fix="pass a text file with one image id per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param {pair!r} is not KEY=VALUE", fix="e.g. --param image_size=64")
        params[key.strip()] = parse_yaml(value, f"--param {key.strip()}", what="value")
    return params


def select_images(folder: Path, budget: int, *, labeled_file: Path | None = None, strategy: str = "vaal",
                  params: list[str] | None = None, out: Path, seed: int = 0, device: str = "auto",
                  work_dir: Path | None = None, progress: Progress | None = None) -> tuple[list[str], dict]:
    pool = DATASETS.get("images")(str(folder))
    position = {image_id: i for i, image_id in enumerate(pool.ids)}
    labeled = []
    if labeled_file is not None:
        for image_id in _read_ids(labeled_file):
            if image_id not in position:
                raise UserError(f"labeled id {image_id!r} is not an image under {folder}", path=labeled_file,
                                fix="ids are paths relative to the image folder, e.g. city/0001.png")
            labeled.append(position[image_id])
    cls = STRATEGIES.get(strategy)
    if cls.needs_model:
        raise UserError(f"strategy {strategy!r} needs a trained task network",
                        fix="use a task-agnostic strategy (vaal, random) or run `segal acquire` with a recipe")
    strategy_obj = make_strategy(strategy, _parse_params(params or []), "--param", prefix="")
    free = len(pool) - len(set(labeled))
    if not 1 <= budget <= free:
        raise UserError(f"budget {budget} is impossible: {free} unlabeled images in {folder}",
                        fix=f"choose a budget between 1 and {free}")
    if out.is_dir():
        raise UserError("--out is a folder", path=out, fix="pass a file name, e.g. --out chosen.txt")
    initial = not labeled and strategy != "random"
    if initial:  # nothing labeled: the paper's random initial set (see the module docstring)
        (progress or Progress()).warn(
            f"no --labeled set: {strategy} needs labeled images to compare the pool with, so these {budget} are a "
            f"random initial set (seed {seed}) as in the VAAL paper; label them, then run again with --labeled")
        strategy_obj = STRATEGIES.get("random")()
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_context(pool, sorted(set(labeled)), budget, num_classes=0, seed=seed,
                        compute=Compute(device=resolve_device(device), batch_size=32), progress=progress, workdir=work_dir,
                        cache_dir=work_dir / "cache" if work_dir is not None else None)
    selection = strategy_obj.select(ctx)
    chosen = [pool.image_id(int(i)) for i in selection.indices]
    atomic_write_bytes(out, ("\n".join(chosen) + "\n").encode())
    scores = None if selection.scores is None else [float(s) for s in np.asarray(selection.scores)]
    atomic_write_json(out.with_name(out.name + ".json"), {
        "strategy": strategy, "budget": budget, "labeled": len(set(labeled)), "pool": len(pool), "ids": chosen,
        "scores": scores, "initial_random_set": initial, "diagnostics": selection.diagnostics})
    return chosen, {**selection.diagnostics, "initial_random_set": initial}
