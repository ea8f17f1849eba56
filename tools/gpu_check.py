"""End-to-end check of segal's CUDA path, with a throughput table; ``--cpu`` runs a tiny version anywhere.

    python tools/gpu_check.py                 # one CUDA GPU, a few minutes (budget: 8)
    python tools/gpu_check.py --cpu           # tiny sizes on the CPU: keeps this file working in CI
    python tools/gpu_check.py --out gpu.json  # also write the table as JSON

Checks, each a row of the table (images/s where it trains or scores):

1. ``amp``: segal's autocast (float16 on CUDA, bfloat16 on CPU) and grad scaler train a small net;
   the loss stays finite and falls, activations are in the autocast dtype.
2. ``channels_last``: a conv net in channels-last memory gives the contiguous net's outputs and
   gradients, under AMP.
3. ``torchrun``: ``torchrun --standalone --nproc_per_node 1`` starts a worker that joins an NCCL
   (gloo with ``--cpu``) group and runs segal's collectives (all-reduce, gradient averaging, score
   gathering) and one DistributedDataParallel AMP step.
4. ``vaal@64``, ``vaal@128``: VAAL at the paper's width (VAE 128→1024, z 32) trained and scored at
   64×64 and 128×128 through ``VAALStrategy`` with AMP; ``vaal vs authors@32``: paper-mode training
   with AMP against the authors' float32 solver step (tools/bench_speed.py), as a ratio.
5. ``drn_d_22@688``: DRN-D-22 trained by ``segal.engine.train`` at 688×688, batch 8, AMP.
6. ``cityscapes loop``: ``segal acquire`` for two acquisitions (VAAL) on generated data written in
   the Cityscapes layout (``leftImg8bit/``, ``gtFine/*_labelIds.png``), read by the real adapter.

Exit code 0 when every check passes, 1 otherwise, 2 when no GPU is there and ``--cpu`` was not given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segal.threads import prefer_passive_wait  # noqa: E402

prefer_passive_wait()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

from segal.data.base import ClassSet, Dataset  # noqa: E402
from segal.device import Compute, amp_dtype, autocast, grad_scaler  # noqa: E402

# sizes: (GPU, --cpu)
SIZES = {
    "amp_steps": (50, 4), "amp_batch": (64, 4),
    "vaal_width": (128, 4), "vaal_batch": (64, 4), "vaal_steps": (20, 1), "vaal_pool": (1024, 16),
    "drn_size": (688, 64), "drn_batch": (8, 2), "drn_steps": (10, 1),
    "loop_images": ((48, 16), (12, 4)), "loop_shape": ((512, 1024), (64, 128)), "loop_size": ((256, 512), (32, 64)),
}


@dataclass
class Row:
    check: str
    ok: bool
    images_per_s: float | None
    seconds: float
    detail: str

    def __post_init__(self):
        self.ok = bool(self.ok)  # numpy booleans are not JSON
        self.images_per_s = None if self.images_per_s is None else float(self.images_per_s)


def pick(name: str, cpu: bool):
    return SIZES[name][1 if cpu else 0]


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))


# ------------------------------------------------------------------ 1, 2
def check_amp(device: torch.device, cpu: bool) -> Row:
    torch.manual_seed(0)
    net, batch, steps = small_net().to(device), pick("amp_batch", cpu), pick("amp_steps", cpu)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = (x.mean((1, 2, 3)) > 0).long() + 2 * (x[:, 0].mean((1, 2)) > 0).long()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    scaler = grad_scaler(device, True)
    losses, dtype = [], None
    t0 = time.perf_counter()
    for _ in range(steps):
        with autocast(device, True):
            hidden = net[0](x)
            dtype = hidden.dtype
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    secs = time.perf_counter() - t0
    ok = all(np.isfinite(losses)) and dtype == amp_dtype(device) and (cpu or losses[-1] < losses[0])
    detail = f"autocast {str(dtype).replace('torch.', '')}, scaler {'on' if scaler.is_enabled() else 'off'}, " \
             f"loss {losses[0]:.3f} → {losses[-1]:.3f}"
    return Row("amp", ok, steps * batch / secs, secs, detail)


def check_channels_last(device: torch.device, cpu: bool) -> Row:
    torch.manual_seed(0)
    ref = small_net().to(device)
    cl = small_net().to(device)
    cl.load_state_dict(ref.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    x = torch.randn(pick("amp_batch", cpu), 3, 32, 32, device=device)
    t0 = time.perf_counter()
    with autocast(device, True):
        out_ref, out_cl = ref(x).float(), cl(x.contiguous(memory_format=torch.channels_last)).float()
        hidden = cl[0](x.contiguous(memory_format=torch.channels_last))
    out_ref.sum().backward()
    out_cl.sum().backward()
    secs = time.perf_counter() - t0
    diff = (out_ref - out_cl).abs().max().item()
    gdiff = (ref[0].weight.grad - cl[0].weight.grad).abs().max().item() / (ref[0].weight.grad.abs().max().item() + 1e-12)
    ok = hidden.is_contiguous(memory_format=torch.channels_last) and diff < 5e-2 and gdiff < 5e-2
    return Row("channels_last", ok, None, secs, f"max |Δ out| {diff:.1e}, relative |Δ grad| {gdiff:.1e}")


# ------------------------------------------------------------------ 3
def dist_worker(cpu: bool) -> int:
    """Runs under torchrun: join the group, exercise segal's collectives and one DDP step."""
    import torch.distributed as tdist

    from segal import distributed as sdist

    device = torch.device("cpu") if cpu else torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group("gloo" if cpu else "nccl")
    try:
        world = tdist.get_world_size()
        ones = torch.ones(4, device=device)
        tdist.all_reduce(ones)
        reduced = sdist.all_reduce_sum(torch.ones(3, device=device))
        net = small_net().to(device)
        net(torch.randn(2, 3, 16, 16, device=device)).sum().backward()
        before = net[0].weight.grad.clone()
        sdist.average_gradients(net)
        idx, scores = sdist.gather_scores(np.array([2, 0, 1]), np.array([0.2, 0.0, 0.1]))
        ddp = nn.parallel.DistributedDataParallel(small_net().to(device), device_ids=[device.index] if device.type == "cuda" else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        scaler = grad_scaler(device, True)
        with autocast(device, True):
            loss = F.cross_entropy(ddp(torch.randn(4, 3, 16, 16, device=device)).float(), torch.tensor([0, 1, 2, 3], device=device))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        ok = (bool((ones == world).all()) and bool((reduced.cpu() == world).all())
              and torch.allclose(before, net[0].weight.grad) and idx.tolist() == [0, 1, 2] * 1
              and scores.tolist() == [0.0, 0.1, 0.2] and bool(torch.isfinite(loss)))
        print(json.dumps({"ok": ok, "backend": tdist.get_backend(), "world": world}))
    finally:
        tdist.destroy_process_group()
    return 0


def check_torchrun(cpu: bool) -> Row:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           str(Path(__file__).resolve()), "--dist-worker"] + (["--cpu"] if cpu else [])
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    secs = time.perf_counter() - t0
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    if run.returncode or not lines:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return Row("torchrun", False, None, secs, f"exit {run.returncode}: {tail[:120]}")
    result = json.loads(lines[-1])
    return Row("torchrun", bool(result["ok"]), None, secs, f"backend {result['backend']}, world {result['world']}")


# ------------------------------------------------------------------ 4, 5
class ArrayPool(Dataset):
    """Generated images (and masks) in memory, as a segal Dataset."""

    task = "segmentation"

    def __init__(self, images: np.ndarray, masks: np.ndarray | None, num_classes: int):
        self.images, self.masks = images, masks
        self.classes = ClassSet(tuple(f"c{i}" for i in range(num_classes)), tuple((i, i, i) for i in range(num_classes)))

    def __len__(self):
        return len(self.images)

    def image_id(self, i):
        return f"gen{i:05d}"

    def load_image(self, i):
        return self.images[i]

    def load_target(self, i):
        return self.masks[i] if self.masks is not None else np.zeros(self.images.shape[1:3], np.uint8)


def check_vaal(device: torch.device, cpu: bool, size: int) -> Row:
    from segal.progress import Progress
    from segal.strategies.context import build_context
    from segal.strategies.vaal import VAALStrategy

    n, batch, steps = pick("vaal_pool", cpu), pick("vaal_batch", cpu), pick("vaal_steps", cpu)
    rng = np.random.default_rng(0)
    pool = ArrayPool(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), None, 2)
    labeled = np.arange(0, n, 10)
    ctx = build_context(pool, labeled, max(1, n // 20), num_classes=2, progress=Progress(),
                        compute=Compute(device, [size, size], amp=True, batch_size=batch))
    strategy = VAALStrategy(VAALStrategy.Params(image_size=size, width=pick("vaal_width", cpu), z_dim=32,
                                                batch_size=batch, steps=steps))
    torch.manual_seed(0)
    vae, disc = (m.to(device) for m in strategy.build())
    t0 = time.perf_counter()
    info = strategy.train(ctx, vae, disc, ctx.labeled, ctx.unlabeled)
    _sync(device)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    idx, scores = strategy.score(ctx, vae, disc, ctx.unlabeled)
    _sync(device)
    score_s = time.perf_counter() - t1
    trained = steps * strategy.params.vae_steps * 2 * batch  # images through the VAE with gradients
    ok = len(idx) == len(ctx.unlabeled) and bool(np.isfinite(scores).all()) and np.isfinite(info["final_vae_loss"])
    return Row(f"vaal@{size}", ok, trained / train_s, train_s + score_s,
               f"width {strategy.params.width}, batch {batch}: train {trained / train_s:,.0f} img/s, "
               f"score {len(idx) / score_s:,.0f} img/s")


def check_vaal_vs_authors(device: torch.device, cpu: bool) -> Row:
    """segal's paper-mode VAAL training (with AMP) against the authors' solver step (float32, as theirs)
    at their 32×32 and the paper's width, through tools/bench_speed.py's re-implementation."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_speed

    args = bench_speed.parse_args((["--quick"] if cpu else []) + ["--vae-steps", str(pick("vaal_steps", cpu) + 1),
                                                                   "--repeats", "1" if cpu else "2", "--amp",
                                                                   "--pool", "64" if cpu else "512"])
    width = args.vae_width
    r = bench_speed.bench_vaal_training(args, device, width)
    ratio = r["authors_over_segal_paper"]
    per_s = r["iterations_per_s"]
    return Row("vaal vs authors@32", np.isfinite(ratio), per_s["segal (paper)"] * 2 * 2 * args.vae_batch,
               sum(r["seconds"].values()),
               f"width {width}, batch {args.vae_batch}: authors' solver / segal (paper, AMP) = {ratio:.2f}×, "
               f"fixed {r['authors_over_segal_fixed']:.2f}×")


def check_drn(device: torch.device, cpu: bool) -> Row:
    from segal.config import TrainConfig
    from segal.engine import train
    from segal.models import MODELS

    size, batch, steps = pick("drn_size", cpu), pick("drn_batch", cpu), pick("drn_steps", cpu)
    rng = np.random.default_rng(0)
    n = batch * 2
    pool = ArrayPool(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                     rng.integers(0, 19, (n, size, size), dtype=np.uint8), 19)
    torch.manual_seed(0)
    model = MODELS.get("drn_d_22")(19)
    cfg = TrainConfig(steps=steps + 1, batch_size=batch, augment=False, amp="on")
    warm = TrainConfig(steps=1, batch_size=batch, augment=False, amp="on")
    compute = Compute(device, [size, size], amp=True, batch_size=batch)
    train(model, pool, np.arange(n), warm, compute=compute, seed=0)  # cudnn autotuning, allocator warm-up
    _sync(device)
    result = train(model, pool, np.arange(n), cfg, compute=compute, seed=1)
    _sync(device)
    ok = result.steps == steps + 1 and np.isfinite(result.final_loss)
    return Row(f"drn_d_22@{size}", ok, result.steps * batch / result.seconds, result.seconds,
               f"batch {batch}, {result.steps} steps, loss {result.final_loss:.3f}"
               + (f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ 6
# demo classes → Cityscapes label ids (sky, building, road, sidewalk, vegetation, car, pole, person)
DEMO_TO_CITYSCAPES_ID = np.array([23, 11, 7, 8, 21, 26, 17, 24], dtype=np.uint8)


def write_cityscapes_layout(root: Path, counts: tuple[int, int], shape: tuple[int, int]) -> None:
    from segal.data.demo import render_scene

    for split, count in zip(("train", "val"), counts, strict=True):
        for i in range(count):
            city = ("aachen", "bochum")[i % 2]
            stem = f"{city}_{i:06d}_000019"
            image, mask = render_scene(np.random.default_rng([7, len(split), i]), *shape)
            for folder, suffix, array in (("leftImg8bit", "_leftImg8bit.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)),
                                          ("gtFine", "_gtFine_labelIds.png", DEMO_TO_CITYSCAPES_ID[mask])):
                path = root / folder / split / city / f"{stem}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), array)


def check_cityscapes_loop(device: torch.device, cpu: bool, tmp: Path) -> Row:
    from segal.cli import main as segal_main

    counts, shape, size = pick("loop_images", cpu), pick("loop_shape", cpu), pick("loop_size", cpu)
    write_cityscapes_layout(tmp / "cityscapes", counts, shape)
    recipe = {
        "name": "gpu-check", "seed": 0, "device": str(device), "output_dir": str(tmp / "run"),
        "data": {"dataset": "cityscapes", "root": str(tmp / "cityscapes"), "image_size": list(size)},
        "model": {"name": "deeplabv3plus", "encoder": "resnet18", "weights": None},
        "train": {"steps": 4 if cpu else 40, "batch_size": 2 if cpu else 8, "eval_batch_size": 4, "amp": "auto"},
        "active": {"initial": counts[0] // 4, "budget": counts[0] // 6 or 1, "cycles": 2, "strategy": "vaal",
                   "strategy_params": {"image_size": 32 if cpu else 64, "width": 4 if cpu else 128,
                                       "batch_size": 4 if cpu else 32, "steps": 1 if cpu else 30}},
    }
    path = tmp / "gpu-check.yaml"
    path.write_text(yaml.safe_dump(recipe))
    t0 = time.perf_counter()
    code = segal_main(["acquire", str(path), "--quiet"])
    secs = time.perf_counter() - t0
    run = tmp / "run"
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").exists() else {}
    metrics = sorted(run.glob("cycles/*/metrics.json"))
    ok = code == 0 and state.get("stage") == "done" and len(metrics) == 3
    miou = [json.loads(m.read_text())["miou"] for m in metrics]
    trained = sum(recipe["train"]["steps"] * recipe["train"]["batch_size"] for _ in metrics)
    return Row("cityscapes loop", ok, trained / secs, secs,
               f"exit {code}, {len(metrics)} cycles, mIoU " + " → ".join(f"{100 * v:.1f}" for v in miou))


# ------------------------------------------------------------------ report
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--skip", default="", help="comma-separated checks to leave out, e.g. torchrun")
    parser.add_argument("--dist-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dist_worker:
        return dist_worker(args.cpu)
    console = Console(width=None if sys.stdout.isatty() else 140)
    if not args.cpu and not torch.cuda.is_available():
        console.print("no CUDA device here — run with --cpu for the small CPU version")
        return 2
    device = torch.device("cpu") if args.cpu else torch.device("cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    name = "cpu" if args.cpu else torch.cuda.get_device_name(device)
    console.print(f"segal GPU check on {name} — torch {torch.__version__}, CUDA {torch.version.cuda}")
    started = time.perf_counter()
    rows: list[Row] = []
    checks = [
        ("amp", lambda: check_amp(device, args.cpu)),
        ("channels_last", lambda: check_channels_last(device, args.cpu)),
        ("torchrun", lambda: check_torchrun(args.cpu)),
        ("vaal@64", lambda: check_vaal(device, args.cpu, 64)),
        ("vaal@128", lambda: check_vaal(device, args.cpu, 128)),
        ("vaal vs authors@32", lambda: check_vaal_vs_authors(device, args.cpu)),
        ("drn_d_22", lambda: check_drn(device, args.cpu)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        checks.append(("cityscapes loop", lambda: check_cityscapes_loop(device, args.cpu, Path(tmp))))
        for check, fn in checks:
            if check in skip:
                continue
            t0 = time.perf_counter()
            try:
                rows.append(fn())
            except Exception as exc:  # noqa: BLE001 — one failed check must not hide the others
                rows.append(Row(check, False, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:200]))
            console.print(f"  {rows[-1].check}: {'ok' if rows[-1].ok else 'FAILED'} ({rows[-1].seconds:.1f} s)")
    total = time.perf_counter() - started
    table = Table(title=f"segal GPU check on {name}: {total:.0f} s")
    for col in ("check", "ok", "images/s", "seconds", "detail"):
        table.add_column(col, justify="right" if col in ("images/s", "seconds") else "left")
    for r in rows:
        table.add_row(r.check, "yes" if r.ok else "[red]NO[/]", f"{r.images_per_s:,.1f}" if r.images_per_s else "—",
                      f"{r.seconds:.1f}", r.detail)
    console.print(table)
    if args.out:
        from segal.fileio import atomic_write_json

        atomic_write_json(args.out, {"device": name, "torch": torch.__version__, "seconds": total,
                                     "rows": [asdict(r) for r in rows]})
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
