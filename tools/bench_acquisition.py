"""Acquisition benchmark: VAAL's scoring and training against the authors' way of doing them, and the
wall time of every registered strategy, all on one synthetic in-memory pool with the same model sizes.

    python tools/bench_acquisition.py                       # 5,000 random 32×32 images, 1 thread
    python tools/bench_acquisition.py --quick               # tiny smoke run
    python tools/bench_acquisition.py --strategies vaal,entropy --out bench.json
    python tools/bench_acquisition.py --task seg            # demo street scenes, DeepLabV3+ (R18)

(a) VAAL scoring throughput (images/s over the unlabeled pool): segal's ``VAALStrategy.score`` (eval
    mode, encoder + discriminator, no grad, streaming) against a naive sampler (VAE in train mode, full
    ``vae(x)`` with the decoder, grad tracking on, per-image list accumulation, ``torch.topk``), the
    authors' ``sampler.py`` (the same but under ``torch.no_grad``), and the floor: pre-loaded tensors,
    ``disc(vae.encode(x)[0])`` under ``inference_mode``, no loader.  segal, naive and authors stream
    through the same loader (segal's eval loader, ``num_workers=0``); a loader-only pass shows its share.
(b) VAAL training iterations/s: segal's ``train()`` (fixed and paper mode) against the authors'
    ``solver.py`` step (2 VAE steps, then 1 discriminator step whose μ comes from a full ``vae(x)``
    under ``no_grad``), both on segal's train loaders.
(c) Wall time of each strategy's ``select()``; committee members are trained by a stand-in
    ``train_model`` of ``--member-steps`` SGD steps, VAAL trains ``--steps`` iterations.

Times are the best of ``--repeats`` (``--train-repeats``) interleaved runs; the machine may be shared, so compare ratios
measured side by side rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segal.data.base import ClassSet, Dataset  # noqa: E402
from segal.data.loaders import make_loader  # noqa: E402
from segal.device import Compute  # noqa: E402
from segal.fileio import atomic_write_json  # noqa: E402
from segal.models import MODELS  # noqa: E402
from segal.models.vaal import VAE, Discriminator  # noqa: E402
from segal.strategies import STRATEGIES  # noqa: E402
from segal.strategies.base import top_k_lowest  # noqa: E402
from segal.strategies.context import build_context  # noqa: E402
from segal.strategies.vaal import VAALStrategy, _forever  # noqa: E402

AIM_FLOOR = 1.2  # segal scoring time / floor time
AIM_NAIVE = 3.0  # naive scoring time / segal scoring time
QUICK = dict(pool=200, image_size=16, vae_width=8, z_dim=8, batch_size=32, steps=3, repeats=1, train_repeats=1,
             mc_passes=2, committee=2, member_steps=1)
DEFAULTS = dict(pool=5000, image_size=32, vae_width=32, z_dim=32, batch_size=64, steps=30, repeats=5, train_repeats=2,
                mc_passes=5, committee=3, member_steps=5)


# ---------------------------------------------------------------- the pool
class InMemoryPool(Dataset):
    """Images and targets held in memory, so that reading costs what segal's loader adds and no more."""

    def __init__(self, images: np.ndarray, targets, task: str, classes: ClassSet):
        self.images, self.targets, self.task, self.classes = images, targets, task, classes

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> str:
        return f"img{index:06d}"

    def load_image(self, index: int) -> np.ndarray:
        return self.images[index]

    def load_target(self, index: int):
        t = self.targets[index]
        return int(t) if self.task == "classification" else t


def make_pool(task: str, n: int, size: int, num_classes: int, seed: int = 0) -> InMemoryPool:
    if task == "seg":
        from segal.data import DATASETS

        demo = DATASETS.get("demo")(None, "train", size=(size, size), n_train=n)
        pairs = [demo[i][:2] for i in range(n)]
        return InMemoryPool(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), "segmentation",
                            demo.classes)
    rng = np.random.default_rng(seed)
    classes = ClassSet(tuple(f"c{i}" for i in range(num_classes)), tuple((i, i, i) for i in range(num_classes)))
    return InMemoryPool(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                        rng.integers(0, num_classes, n), "classification", classes)


def vaal(args, **overrides) -> VAALStrategy:
    params = dict(image_size=args.image_size, z_dim=args.z_dim, width=args.vae_width, batch_size=args.batch_size,
                  steps=args.steps)
    return VAALStrategy(VAALStrategy.Params(**(params | overrides)))


def best_of(runs: dict, repeats: int) -> dict[str, float]:
    """Interleave the runs ``repeats`` times (so load changes hit all alike); best time of each."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


# ---------------------------------------------------------------- (a) scoring
def naive_scores(vae, disc, loader, device, budget: int, grad: bool) -> np.ndarray:
    """The authors' sampler.py: train-mode VAE, full forward with the decoder, per-image list, topk.
    ``grad=True`` also drops their ``torch.no_grad`` (the fully naive path)."""
    vae.train()
    disc.train()
    all_preds, all_indices = [], []
    with torch.set_grad_enabled(grad):
        for images, indices in loader:
            images = images.to(device)
            _, _, mu, _ = vae(images)
            preds = torch.sigmoid(disc(mu))  # their discriminator ends in a sigmoid
            all_preds.extend(preds.cpu().data)
            all_indices.extend(indices)
    all_preds = torch.stack(all_preds).view(-1)
    all_preds *= -1
    _, query = torch.topk(all_preds, budget)
    return np.asarray(all_indices)[query.numpy()]


def bench_scoring(args, pool, labeled, budget, device) -> dict:
    torch.manual_seed(0)
    strategy = vaal(args)
    vae, disc = (m.to(device) for m in strategy.build())
    ctx = build_context(pool, labeled, budget, num_classes=len(pool.classes),
                        compute=Compute(device, [args.image_size] * 2, batch_size=args.batch_size))
    n = len(ctx.unlabeled)
    size = [args.image_size] * 2
    loader = ctx.eval_loader(ctx.unlabeled, image_size_override=size, batch_size_override=args.batch_size)
    batches = [x.to(device) for x, _ in loader]  # the floor's pre-loaded tensors
    naive_vae, naive_disc = copy.deepcopy(vae), copy.deepcopy(disc)  # train-mode BN must not touch segal's stats
    out = {}

    def segal():
        idx, scores = strategy.score(ctx, vae, disc, ctx.unlabeled)
        out["segal"] = (idx, scores, top_k_lowest(scores, idx, budget))

    def floor():
        vae.eval()
        disc.eval()
        with torch.inference_mode():
            out["floor"] = torch.cat([disc(vae.encode(x)[0]) for x in batches])

    def fed_floor():
        vae.eval()
        disc.eval()
        with torch.inference_mode():
            torch.cat([disc(vae.encode(x.to(device))[0]) for x, _ in loader])

    def loader_only():
        for x, _ in loader:
            x.to(device)

    runs = {
        "segal": segal,
        "naive": lambda: naive_scores(naive_vae, naive_disc, loader, device, budget, grad=True),
        "authors": lambda: naive_scores(naive_vae, naive_disc, loader, device, budget, grad=False),
        "floor": floor,
        "floor + loader": fed_floor,
        "loader": loader_only,
    }
    best = best_of(runs, args.repeats)
    idx, scores, _ = out["segal"]
    diff = float(np.abs(scores - torch.sigmoid(out["floor"]).double().cpu().numpy()).max())
    return {
        "images": n,
        "seconds": best,
        "images_per_s": {k: n / t for k, t in best.items()},
        "segal_over_floor": best["segal"] / best["floor"],
        "naive_over_segal": best["naive"] / best["segal"],
        "authors_over_segal": best["authors"] / best["segal"],
        "segal_minus_loader_over_floor": (best["segal"] - best["loader"]) / best["floor"],
        "segal_over_floor_plus_loader": best["segal"] / best["floor + loader"],
        "segal_vs_floor_max_abs_diff": diff,
    }


# ---------------------------------------------------------------- (b) training
def naive_train(ctx, vae, disc, labeled, unlabeled, args, beta: float = 1.0, adversary: float = 1.0) -> None:
    """The authors' solver.py VAAL step (task-model step left out): 2 VAE steps, one forward per pool,
    then 1 discriminator step whose μ comes from the full ``vae(x)`` (decoder included) under no_grad."""
    size, b = [args.image_size] * 2, args.batch_size
    lab = _forever(ctx.train_loader(labeled, image_size_override=size, batch_size_override=b, salt=101))
    unl = _forever(ctx.train_loader(unlabeled, image_size_override=size, batch_size_override=b, salt=102))
    opt_vae = torch.optim.Adam(vae.parameters(), lr=5e-4)
    opt_disc = torch.optim.Adam(disc.parameters(), lr=5e-4)
    vae.train()
    disc.train()

    def loss_vae(x, recon, mu, logvar):
        return F.mse_loss(recon, x) + beta * (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))

    def bce(logits, target):
        return F.binary_cross_entropy(torch.sigmoid(logits), torch.full_like(logits, target))

    for _ in range(args.steps):
        xl, xu = next(lab)[0].to(ctx.device), next(unl)[0].to(ctx.device)
        for count in range(2):
            recon, _, mu, logvar = vae(xl)
            unsup = loss_vae(xl, recon, mu, logvar)
            u_recon, _, u_mu, u_logvar = vae(xu)
            transductive = loss_vae(xu, u_recon, u_mu, u_logvar)
            dsc = bce(disc(mu), 1.0) + bce(disc(u_mu), 1.0)
            total = unsup + transductive + adversary * dsc
            opt_vae.zero_grad()
            total.backward()
            opt_vae.step()
            if count < 1:
                xl, xu = next(lab)[0].to(ctx.device), next(unl)[0].to(ctx.device)
        with torch.no_grad():
            _, _, mu, _ = vae(xl)
            _, _, u_mu, _ = vae(xu)
        d_loss = bce(disc(mu), 1.0) + bce(disc(u_mu), 0.0)
        opt_disc.zero_grad()
        d_loss.backward()
        opt_disc.step()


def bench_training(args, pool, labeled, budget, device) -> dict:
    ctx = build_context(pool, labeled, budget, num_classes=len(pool.classes),
                        compute=Compute(device, [args.image_size] * 2, batch_size=args.batch_size))

    def fresh(strategy):
        torch.manual_seed(0)
        return (m.to(device) for m in strategy.build())

    def segal(mode):
        strategy = vaal(args, mode=mode)
        return lambda: strategy.train(ctx, *fresh(strategy), ctx.labeled, ctx.unlabeled)

    runs = {
        "segal (fixed)": segal("fixed"),
        "segal (paper)": segal("paper"),
        "naive (authors' solver)": lambda: naive_train(ctx, *fresh(vaal(args)), ctx.labeled, ctx.unlabeled, args),
    }
    best = best_of(runs, args.train_repeats)
    return {
        "steps": args.steps,
        "seconds": best,
        "iterations_per_s": {k: args.steps / t for k, t in best.items()},
        "naive_over_segal_fixed": best["naive (authors' solver)"] / best["segal (fixed)"],
        "naive_over_segal_paper": best["naive (authors' solver)"] / best["segal (paper)"],
    }


# ---------------------------------------------------------------- (c) every strategy
def task_network(args, pool):
    num_classes = len(pool.classes)
    if pool.task == "segmentation":
        return lambda: MODELS.get("deeplabv3plus")(num_classes, encoder="resnet18", weights=None, dropout=0.1)
    return lambda: MODELS.get("resnet18")(num_classes, input_size=32, dropout=0.1)


def member_trainer(args, pool, device):
    """A stand-in for the loop's recipe: ``--member-steps`` SGD steps on the member's training set."""

    def train_model(model, indices, seed):
        torch.manual_seed(seed)
        model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loader = make_loader(pool, indices, size=[args.image_size] * 2, batch_size=args.batch_size, train=True,
                             with_targets=True, seed=seed, drop_last=True)
        batches = _forever(loader)
        for _ in range(args.member_steps):
            x, y, _ = next(batches)
            loss = F.cross_entropy(model(x.to(device)), y.to(device), ignore_index=pool.classes.ignore_index)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()

    return train_model


def strategy_params(name: str, args):
    cls = STRATEGIES.get(name)
    knobs = {"mc_dropout": {"T": args.mc_passes}, "ensemble_varratio": {"M": args.committee},
             "qbc": {"M": args.committee}, "suggestive_annotation": {"K": args.committee}}
    if name == "vaal":
        return vaal(args)
    return cls(cls.Params(**knobs.get(name, {})))


def bench_selection(args, pool, labeled, budget, device) -> dict:
    build = task_network(args, pool)
    train_model = member_trainer(args, pool, device)
    torch.manual_seed(0)
    model = train_model(build(), labeled, 0)  # the loop's network, trained like a member
    results = {}
    for name in args.strategies:
        ctx = build_context(pool, labeled, budget, num_classes=len(pool.classes), model=model,
                            compute=Compute(device, [args.image_size] * 2, batch_size=args.batch_size), build_model=build,
                            train_model=train_model)
        strategy = strategy_params(name, args)
        t0 = time.perf_counter()
        selection = strategy.select(ctx)
        seconds = time.perf_counter() - t0
        chosen = np.asarray(selection.indices)
        valid = len(set(chosen.tolist())) == budget and bool(np.isin(chosen, ctx.unlabeled).all())
        results[name] = {"seconds": seconds, "images_per_s": len(ctx.unlabeled) / seconds, "valid": valid,
                         "params": dict(vars(strategy.params))}
    return results


# ---------------------------------------------------------------- report
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("cls", "seg"), default="cls",
                        help="cls: random uint8 images, ResNet-18 (B×C); seg: demo scenes, DeepLabV3+ R18")
    parser.add_argument("--pool", type=int, help=f"pool images (default {DEFAULTS['pool']}, quick {QUICK['pool']})")
    parser.add_argument("--image-size", type=int, help="pool, VAE and task-network input side (multiple of 16)")
    parser.add_argument("--vae-width", type=int, help="VAE first-layer channels")
    parser.add_argument("--z-dim", type=int, help="VAE latent size")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, help="VAAL training iterations in (b) and (c)")
    parser.add_argument("--repeats", type=int, help="interleaved scoring runs in (a); the best counts")
    parser.add_argument("--train-repeats", type=int, help="interleaved training runs in (b); the best counts")
    parser.add_argument("--mc-passes", type=int, help="mc_dropout T")
    parser.add_argument("--committee", type=int, help="ensemble_varratio/qbc M and suggestive_annotation K")
    parser.add_argument("--member-steps", type=int, help="SGD steps of the stand-in train_model")
    parser.add_argument("--labeled", type=float, default=0.1, help="labeled share of the pool")
    parser.add_argument("--budget", type=float, default=0.05, help="acquired share of the pool")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--strategies", default="all", help="comma-separated names, or all")
    parser.add_argument("--sections", default="scoring,training,selection")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: fair side-by-side ratios)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.strategies = STRATEGIES.names() if args.strategies == "all" else [s.strip() for s in args.strategies.split(",")]
    args.sections = [s.strip() for s in args.sections.split(",")]
    return args


def print_scoring(console, r: dict, args) -> None:
    t = Table(title=f"(a) VAAL scoring of {r['images']:,} unlabeled images (batch {args.batch_size}), "
                    f"best of {args.repeats}")
    for col in ("path", "what it does", "images/s", "seconds", "× segal time"):
        t.add_column(col, justify="left" if col in ("path", "what it does") else "right")
    what = {
        "segal": "VAALStrategy.score: eval, encoder + disc, no_grad, streamed",
        "naive": "train mode, full vae(x), grad on, per-image list, topk, streamed",
        "authors": "their sampler.py: as naive but under no_grad, streamed",
        "floor": "pre-loaded tensors, disc(vae.encode(x)[0]), inference_mode",
        "floor + loader": "the floor's forward fed by the loader",
        "loader": "segal's eval loader alone (num_workers 0), no model",
    }
    seg = r["seconds"]["segal"]
    for name, secs in r["seconds"].items():
        t.add_row(name, what[name], f"{r['images_per_s'][name]:,.0f}", f"{secs:.3f}", f"{secs / seg:.2f}")
    console.print(t)
    ok = lambda good: "[green]meets aim[/]" if good else "[red]misses aim[/]"  # noqa: E731
    console.print(f"segal / floor time  = {r['segal_over_floor']:.2f}×  (aim ≤ {AIM_FLOOR}) "
                  f"{ok(r['segal_over_floor'] <= AIM_FLOOR)};  less the loader's time "
                  f"{r['segal_minus_loader_over_floor']:.2f}×;  segal / (floor + loader) "
                  f"{r['segal_over_floor_plus_loader']:.2f}×")
    console.print(f"naive / segal time  = {r['naive_over_segal']:.2f}×  (aim ≥ {AIM_NAIVE}) "
                  f"{ok(r['naive_over_segal'] >= AIM_NAIVE)};  authors' sampler / segal = "
                  f"{r['authors_over_segal']:.2f}×")
    console.print(f"segal scores vs sigmoid(floor): max |Δ| = {r['segal_vs_floor_max_abs_diff']:.1e}")


def print_training(console, r: dict, args) -> None:
    t = Table(title=f"(b) VAAL training, {r['steps']} iterations (2 VAE steps + 1 D step), batch {args.batch_size} "
                    f"per pool, best of {args.train_repeats}")
    for col in ("path", "iterations/s", "seconds", "× segal (fixed) time"):
        t.add_column(col, justify="left" if col == "path" else "right")
    base = r["seconds"]["segal (fixed)"]
    for name, secs in r["seconds"].items():
        t.add_row(name, f"{r['iterations_per_s'][name]:.2f}", f"{secs:.2f}", f"{secs / base:.2f}")
    console.print(t)
    verdict = "[green]meets aim[/]" if r["naive_over_segal_fixed"] > 1 else "[red]misses aim[/]"
    console.print(f"naive / segal time = {r['naive_over_segal_fixed']:.2f}× (fixed), "
                  f"{r['naive_over_segal_paper']:.2f}× (paper)  (aim > 1) {verdict}")


def print_selection(console, r: dict, n_unlabeled: int, budget: int) -> None:
    t = Table(title=f"(c) select(): {budget} of {n_unlabeled:,} unlabeled images")
    for col in ("strategy", "knobs", "seconds", "images/s", "valid selection"):
        t.add_column(col, justify="left" if col in ("strategy", "knobs") else "right")
    for name, row in r.items():
        p = row["params"]
        knobs = ", ".join(f"{k}={p[k]}" for k in ("T", "M", "K", "steps", "width", "z_dim", "batch_size") if k in p)
        t.add_row(name, knobs, f"{row['seconds']:.1f}", f"{row['images_per_s']:,.0f}", "yes" if row["valid"] else "NO")
    console.print(t)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from segal.device import resolve_device

    device = resolve_device(args.device)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 130)
    try:
        pool = make_pool(args.task, args.pool, args.image_size, args.num_classes)
        rng = np.random.default_rng(0)
        labeled = np.sort(rng.choice(args.pool, max(2, round(args.labeled * args.pool)), replace=False))
        budget = max(1, round(args.budget * args.pool))
        settings = {
            "task": pool.task, "pool": args.pool, "labeled": len(labeled), "unlabeled": args.pool - len(labeled),
            "budget": budget, "image_size": args.image_size, "vae_width": args.vae_width, "z_dim": args.z_dim,
            "disc_layers": VAALStrategy.Params.disc_layers, "batch_size": args.batch_size, "steps": args.steps,
            "repeats": args.repeats, "train_repeats": args.train_repeats, "mc_passes": args.mc_passes, "committee": args.committee,
            "member_steps": args.member_steps, "threads": args.threads, "device": str(device),
            "torch": torch.__version__, "loadavg_at_start": os.getloadavg()[0],
            "task_network": "deeplabv3plus(resnet18)" if pool.task == "segmentation" else "resnet18(input_size=32)",
            "vae_params": sum(p.numel() for p in VAE(args.z_dim, args.image_size, args.vae_width).parameters()),
            "disc_params": sum(p.numel() for p in Discriminator(args.z_dim).parameters()),
        }
        console.print("segal acquisition benchmark — " + ", ".join(f"{k} {v}" for k, v in settings.items()))
        results: dict = {"settings": settings}
        if "scoring" in args.sections:
            results["scoring"] = bench_scoring(args, pool, labeled, budget, device)
            print_scoring(console, results["scoring"], args)
        if "training" in args.sections:
            results["training"] = bench_training(args, pool, labeled, budget, device)
            print_training(console, results["training"], args)
        if "selection" in args.sections:
            results["selection"] = bench_selection(args, pool, labeled, budget, device)
            print_selection(console, results["selection"], settings["unlabeled"], budget)
        if args.out:
            atomic_write_json(args.out, results)
        return results
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
