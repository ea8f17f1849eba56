"""Could a prediction-based sieve clean the dominant oracle's labels?  An offline measurement.

Kim et al. (ICCV 2023) leave out of the loss the pixels whose dominant label is likely wrong
("sieving").  Before building such a rule into training, this tool measures on a finished
dominant-oracle region run how well the run's own networks could tell those pixels apart: for each
cycle ``c >= 1``, the network cycle ``c`` warm-starts from (``cycles/<c-1>/task.pt``) predicts every
image touched through ``c`` (at the run's image size, upsampled to the mask's), and each labeled
pixel's dominant label is checked against the ground truth.  Two rules at several thresholds:

- ``disagree@t``: drop a pixel when the network's top class is not its label, with probability ``≥ t``;
- ``lowp@t``: drop a pixel when the network gives its label probability ``< t``.

For each, the share of wrong pixels dropped, the share of right pixels dropped, and the noise left.
These are segal's rules in the spirit of Kim et al.'s, not a reproduction of theirs.  Reads the run,
writes nothing into it; one thread, a few CPU minutes a cycle on CamVid::

    python tools/sieve_study.py RUN_DIR --out sieve.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segal.cli import os_error_line  # noqa: E402
from segal.errors import UserError  # noqa: E402
from segal.fileio import atomic_write_json  # noqa: E402

RULES = [("disagree", t) for t in (0.3, 0.5, 0.7, 0.9)] + [("lowp", t) for t in (0.05, 0.1, 0.2, 0.3)]


def drop_mask(rule: str, threshold: float, probs: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Pixels ``rule`` would leave out of the loss; ``probs`` C×H×W, ``label`` H×W class ids (in range)."""
    if rule == "disagree":
        return (probs.argmax(0) != label) & (probs.max(0) >= threshold)
    if rule == "lowp":
        return np.take_along_axis(probs, label[None].astype(np.int64), 0)[0] < threshold
    raise ValueError(f"unknown rule {rule!r}")


def sieve_counts(probs: np.ndarray, label: np.ndarray, truth: np.ndarray, ignore_index: int) -> dict[str, list[int]]:
    """``{"totals": [wrong, labeled], "<rule>@<t>": [wrong dropped, right dropped]}`` for one image."""
    labeled = (label != ignore_index) & (truth != ignore_index)
    wrong, right = labeled & (label != truth), labeled & (label == truth)
    safe = np.where(labeled, label, 0)
    out = {"totals": [int(wrong.sum()), int(labeled.sum())]}
    for rule, t in RULES:
        drop = drop_mask(rule, t, probs, safe)
        out[f"{rule}@{t:g}"] = [int((drop & wrong).sum()), int((drop & right).sum())]
    return out


def summarise(counts: dict[str, list[int]]) -> dict:
    """Shares from summed :func:`sieve_counts`."""
    wrong, labeled = counts["totals"]
    right = labeled - wrong
    res: dict = {"wrong": wrong, "labeled": labeled, "noise": wrong / max(labeled, 1)}
    for key, (wd, rd) in counts.items():
        if key != "totals":
            res[key] = {"wrong_dropped": wd / max(wrong, 1), "right_dropped": rd / max(right, 1),
                        "noise_after": (wrong - wd) / max(labeled - wd - rd, 1)}
    return res


def study(run_dir: Path) -> dict[int, dict]:
    import torch
    import torch.nn.functional as F

    from segal.data.loaders import make_loader
    from segal.pool import PoolState
    from segal.regions.state import load_region_labels
    from segal.regions.training import RegionTrainingView
    from segal.runs import open_run

    torch.set_num_threads(1)
    run = open_run(run_dir)
    if run.recipe.active.unit != "region" or run.region_oracle != "dominant":
        raise UserError("not a region run with the dominant oracle", path=run_dir / "recipe.yaml",
                        fix="pass a run with active.unit: region and regions.oracle: dominant")
    state = PoolState.load(run.state_path)
    cache = run.region_cache()
    labels = load_region_labels(state, run.state_path, cache.offsets)
    pool, ignore = run.pool, run.pool.classes.ignore_index
    cycles = sorted(int(p.parent.name) for p in run_dir.glob("cycles/*/task.pt"))
    out = {}
    for c in [c for c in cycles if c + 1 <= state.cycle]:  # the network cycle c + 1 warm-starts from
        model = run.load_task_model(c).eval()
        view = RegionTrainingView(pool, cache, labels, "dominant", c + 1)
        images = view.training_images()
        total: dict[str, list[int]] = {}
        loader = make_loader(pool, images, size=run.compute.image_size, batch_size=8, train=False, with_targets=False)
        with torch.no_grad():
            for batch, idx in loader:
                for logit, i in zip(model(batch).float(), idx.tolist(), strict=True):
                    truth = np.asarray(pool.load_target(i))
                    up = F.interpolate(logit[None], size=truth.shape, mode="bilinear", align_corners=False)[0]
                    counts = sieve_counts(torch.softmax(up, 0).numpy(), view.load_target(i), truth, ignore)
                    for k, v in counts.items():
                        total[k] = [a + b for a, b in zip(total.get(k, [0, 0]), v, strict=True)]
        out[c + 1] = {"images": len(images), **summarise(total)}
        print(f"cycle {c + 1}: noise {100 * out[c + 1]['noise']:.1f}% over {len(images)} images", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished region run with regions.oracle: dominant")
    parser.add_argument("--out", type=Path, required=True, help="JSON of the shares per cycle and rule")
    args = parser.parse_args(argv)
    try:
        if args.out.exists() and args.out.is_dir():
            raise UserError("--out is a folder, a JSON file was expected", path=args.out, fix="pass a file name")
        result = study(args.run_dir)
        atomic_write_json(args.out, result)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line, as segal says it
        return 2
    except OSError as exc:  # an unwritable --out, a full disk
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    for cycle, res in result.items():
        rows = [f"{k} {100 * v['wrong_dropped']:.0f}%/{100 * v['right_dropped']:.1f}%→{100 * v['noise_after']:.1f}%"
                for k, v in res.items() if isinstance(v, dict)]
        print(f"cycle {cycle} (noise {100 * res['noise']:.1f}%): " + "; ".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
