"""Speed benchmark: segal side by side with the authors' VAAL and with bare PyTorch, in one process, as ratios.

    python tools/bench_speed.py                   # every section at the paper's width (minutes on 2 cores)
    python tools/bench_speed.py --quick           # tiny sizes: a smoke run in seconds (tests/test_bench_speed.py)
    python tools/bench_speed.py --sections scoring,training --out speed.json
    python tools/bench_speed.py --camvid ../shared/data/camvid   # task training on real PNGs

(a) VAAL scoring of a pool of random 32×32 images at the paper's width (VAE 128→1024, z 32, batch
    128): segal's ``VAALStrategy.score`` against the authors' ``sampler.py`` running their ``model.py``
    (re-implemented below, each line citing the place it follows), and against the floor, the bare
    ``disc(vae.encode(x)[0])`` forward on pre-loaded tensors.  Aims: authors / segal ≥ 4.5, segal /
    floor ≤ 1.1.
(b) VAAL training iterations (2 VAE steps + 1 discriminator step, batch 128 per pool) of segal's
    ``train()`` in ``paper`` and ``fixed`` mode against the authors' ``solver.py`` step (their task-model
    step left out: segal trains the task network separately), at the paper's width and at the CPU
    width (``--cpu-width``, 32).  Aim: authors / segal (paper) ≥ 1.5 at the paper's width.
(c) A task-training step of segal's ``engine.train`` (DeepLabV3+ ResNet-18, Adam, cross-entropy),
    uncached and with the training-input cache (``data.cache: true``), against a bare smp step of
    the same model, batch, size, optimiser and loss on pre-loaded tensors.  Aim: cached / bare ≤ 1.15.
(d) Sharing: the bare step's throughput in one process alone, then in two processes at once with
    the threads divided between them (segal's rule, ``segal.threads``), and two at once each taking
    every core.  Aim: each of two ≈ half of one alone.
(e) ``--sections demo``: ``segal acquire recipes/demo.yaml`` end to end, alone and then two at once.
    Aims: ≤ 100 s alone on 2 idle cores, ≤ 2× that for each of two.

Every pair in (a)–(c) is timed interleaved, best of ``--repeats``, in one process, so a load that
changes hits both alike; compare ratios, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from segal.threads import prefer_passive_wait  # noqa: E402

prefer_passive_wait()  # before torch loads OpenMP, as the segal command does

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_acquisition import best_of, make_pool  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import init  # noqa: E402

from segal.config import TrainConfig  # noqa: E402
from segal.data.base import Dataset  # noqa: E402
from segal.data.loaders import make_loader  # noqa: E402
from segal.device import Compute  # noqa: E402
from segal.engine import train as segal_train  # noqa: E402
from segal.fileio import atomic_write_json  # noqa: E402
from segal.models import MODELS  # noqa: E402
from segal.strategies.context import build_context  # noqa: E402
from segal.strategies.vaal import VAALStrategy  # noqa: E402
from segal.threads import choose_threads, configure_threads, usable_cores  # noqa: E402

AIMS = {"authors_over_segal_scoring": 4.5, "segal_over_floor_scoring": 1.1, "authors_over_segal_training": 1.5,
        "cached_over_bare_task_step": 1.15}
PAPER = dict(pool=1843, vae_width=128, z_dim=32, vae_size=32, vae_batch=128, vae_steps=6, cpu_width=32,
             task_size=(96, 128), task_source=(192, 256), task_batch=8, task_steps=8, task_pool=64, repeats=3,
             share_steps=10)
QUICK = dict(pool=96, vae_width=8, z_dim=8, vae_size=32, vae_batch=16, vae_steps=2, cpu_width=4,
             task_size=(32, 32), task_source=(64, 64), task_batch=4, task_steps=2, task_pool=12, repeats=1,
             share_steps=2)


# ============================================================ the authors' code, re-implemented
# github.com/sinhasam/vaal, model.py and sampler.py at 395da2e, solver.py at 35327e6.  `width`
# generalises their hard-wired 128 (the only change) so the same code runs at the CPU width.

class AuthorsView(nn.Module):  # model.py: class View
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, tensor):
        return tensor.view(self.size)  # model.py: View.forward


def authors_kaiming_init(m):  # model.py: kaiming_init (ConvTranspose2d is not in their list, as there)
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        init.kaiming_normal_(m.weight)  # model.py: init.kaiming_normal (the deprecated spelling)
        if m.bias is not None:
            m.bias.data.fill_(0)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        m.weight.data.fill_(1)
        if m.bias is not None:
            m.bias.data.fill_(0)


class AuthorsVAE(nn.Module):
    """model.py: class VAE (32×32 inputs only, as theirs)."""

    def __init__(self, z_dim=32, nc=3, width=128):
        super().__init__()
        c = [width, 2 * width, 4 * width, 8 * width]  # model.py: 128, 256, 512, 1024
        self.z_dim = z_dim
        self.encoder = nn.Sequential(  # model.py: VAE.__init__, self.encoder
            nn.Conv2d(nc, c[0], 4, 2, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(True),
            nn.Conv2d(c[0], c[1], 4, 2, 1, bias=False), nn.BatchNorm2d(c[1]), nn.ReLU(True),
            nn.Conv2d(c[1], c[2], 4, 2, 1, bias=False), nn.BatchNorm2d(c[2]), nn.ReLU(True),
            nn.Conv2d(c[2], c[3], 4, 2, 1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU(True),
            AuthorsView((-1, c[3] * 2 * 2)),
        )
        self.fc_mu = nn.Linear(c[3] * 2 * 2, z_dim)  # model.py: self.fc_mu
        self.fc_logvar = nn.Linear(c[3] * 2 * 2, z_dim)  # model.py: self.fc_logvar
        self.decoder = nn.Sequential(  # model.py: self.decoder
            nn.Linear(z_dim, c[3] * 4 * 4), AuthorsView((-1, c[3], 4, 4)),
            nn.ConvTranspose2d(c[3], c[2], 4, 2, 1, bias=False), nn.BatchNorm2d(c[2]), nn.ReLU(True),
            nn.ConvTranspose2d(c[2], c[1], 4, 2, 1, bias=False), nn.BatchNorm2d(c[1]), nn.ReLU(True),
            nn.ConvTranspose2d(c[1], c[0], 4, 2, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(True),
            nn.ConvTranspose2d(c[0], nc, 1),
        )
        for block in self._modules:  # model.py: VAE.weight_init
            for m in self._modules[block] if isinstance(self._modules[block], nn.Sequential) else [self._modules[block]]:
                authors_kaiming_init(m)

    def forward(self, x):  # model.py: VAE.forward
        z = self.encoder(x)
        mu, logvar = self.fc_mu(z), self.fc_logvar(z)
        z = self.reparameterize(mu, logvar)
        x_recon = self.decoder(z)
        return x_recon, z, mu, logvar

    def reparameterize(self, mu, logvar):  # model.py: VAE.reparameterize
        stds = (0.5 * logvar).exp()
        epsilon = torch.randn(*mu.size())  # drawn on the CPU ...
        if mu.is_cuda:
            stds, epsilon = stds.cuda(), epsilon.cuda()  # ... and copied, every step
        return epsilon * stds + mu


class AuthorsDiscriminator(nn.Module):
    """model.py: class Discriminator (5 layers, ends in a sigmoid)."""

    def __init__(self, z_dim=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim, 512), nn.ReLU(True), nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, 512),
            nn.ReLU(True), nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, 1), nn.Sigmoid(),
        )
        for m in self.net:  # model.py: Discriminator.weight_init
            authors_kaiming_init(m)

    def forward(self, z):
        return self.net(z)


def authors_sample(vae, discriminator, data, device, budget):
    """sampler.py: AdversarySampler.sample (their loader yields (images, _, indices); segal's (images, indices))."""
    all_preds, all_indices = [], []
    for images, indices in data:
        images = images.to(device)  # sampler.py: `if cuda: images = images.cuda()`
        with torch.no_grad():
            _, _, mu, _ = vae(images)  # the full forward, decoder included
            preds = discriminator(mu)
        preds = preds.cpu().data
        all_preds.extend(preds)  # one tensor per image
        all_indices.extend(indices)
    all_preds = torch.stack(all_preds)
    all_preds = all_preds.view(-1)
    all_preds *= -1  # sampler.py: "need to multiply by -1 to be able to use torch.topk"
    _, querry_indices = torch.topk(all_preds, int(budget))
    return np.asarray(all_indices)[querry_indices]


def authors_vae_loss(x, recon, mu, logvar, beta, mse_loss):  # solver.py: Solver.vae_loss
    MSE = mse_loss(recon, x)  # noqa: N806 — their names
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # noqa: N806
    KLD = KLD * beta  # noqa: N806
    return MSE + KLD


def authors_train(vae, discriminator, labeled_loader, unlabeled_loader, device, iterations, *, num_vae_steps=2,
                  num_adv_steps=1, beta=1.0, adversary_param=1.0):
    """solver.py: Solver.train, the VAE and discriminator steps of each iteration (the task-model step left out)."""
    bce_loss, mse_loss = nn.BCELoss(), nn.MSELoss()  # solver.py: Solver.__init__

    def read_data(dataloader):  # solver.py: Solver.read_data (labels=False)
        while True:
            for img, _ in dataloader:
                yield img

    labeled_data, unlabeled_data = read_data(labeled_loader), read_data(unlabeled_loader)
    optim_vae = torch.optim.Adam(vae.parameters(), lr=5e-4)  # solver.py: optim_vae
    optim_discriminator = torch.optim.Adam(discriminator.parameters(), lr=5e-4)
    vae.train()
    discriminator.train()
    for _ in range(iterations):
        labeled_imgs = next(labeled_data).to(device)  # solver.py: next(labeled_data), `.cuda()`
        unlabeled_imgs = next(unlabeled_data).to(device)
        for count in range(num_vae_steps):  # solver.py: "# VAE step"
            recon, z, mu, logvar = vae(labeled_imgs)
            unsup_loss = authors_vae_loss(labeled_imgs, recon, mu, logvar, beta, mse_loss)
            unlab_recon, unlab_z, unlab_mu, unlab_logvar = vae(unlabeled_imgs)
            transductive_loss = authors_vae_loss(unlabeled_imgs, unlab_recon, unlab_mu, unlab_logvar, beta, mse_loss)
            labeled_preds = discriminator(mu).view(-1)  # .view(-1): BCELoss now refuses their (B,1) vs (B,)
            unlabeled_preds = discriminator(unlab_mu).view(-1)
            lab_real_preds = torch.ones(labeled_imgs.size(0)).to(device)  # solver.py: torch.ones(...), `.cuda()`
            unlab_real_preds = torch.zeros(unlabeled_imgs.size(0)).to(device)  # (their label, zeros, is kept)
            dsc_loss = bce_loss(labeled_preds, lab_real_preds) + bce_loss(unlabeled_preds, unlab_real_preds)
            total_vae_loss = unsup_loss + transductive_loss + adversary_param * dsc_loss
            optim_vae.zero_grad()
            total_vae_loss.backward()
            optim_vae.step()
            if count < (num_vae_steps - 1):  # solver.py: "sample new batch if needed"
                labeled_imgs = next(labeled_data).to(device)
                unlabeled_imgs = next(unlabeled_data).to(device)
        for count in range(num_adv_steps):  # solver.py: "# Discriminator step"
            with torch.no_grad():
                _, _, mu, _ = vae(labeled_imgs)  # a second full forward of the same batch
                _, _, unlab_mu, _ = vae(unlabeled_imgs)
            labeled_preds = discriminator(mu).view(-1)
            unlabeled_preds = discriminator(unlab_mu).view(-1)
            lab_real_preds = torch.ones(labeled_imgs.size(0)).to(device)
            unlab_fake_preds = torch.zeros(unlabeled_imgs.size(0)).to(device)
            dsc_loss = bce_loss(labeled_preds, lab_real_preds) + bce_loss(unlabeled_preds, unlab_fake_preds)
            optim_discriminator.zero_grad()
            dsc_loss.backward()
            optim_discriminator.step()
            if count < (num_adv_steps - 1):
                labeled_imgs = next(labeled_data).to(device)
                unlabeled_imgs = next(unlabeled_data).to(device)


# ============================================================ (a) scoring, (b) VAAL training
def synced(runs: dict, device) -> dict:
    """Each run waits for the GPU to finish before its clock stops (a no-op on the CPU)."""
    if device.type != "cuda":
        return runs
    return {name: (lambda fn=fn: (fn(), torch.cuda.synchronize(device))) for name, fn in runs.items()}


def vaal_setup(args, width: int, device):
    pool = make_pool("cls", args.pool, args.vae_size, 10)
    labeled = np.sort(np.random.default_rng(0).choice(args.pool, max(2, args.pool // 10), replace=False))
    ctx = build_context(pool, labeled, max(1, args.pool // 20), num_classes=10,
                        compute=Compute(device, [args.vae_size] * 2, amp=args.amp, batch_size=args.vae_batch))
    params = VAALStrategy.Params(image_size=args.vae_size, z_dim=args.z_dim, width=width, batch_size=args.vae_batch,
                                 steps=args.vae_steps)
    return ctx, params


def bench_scoring(args, device) -> dict:
    ctx, params = vaal_setup(args, args.vae_width, device)
    strategy = VAALStrategy(params)
    torch.manual_seed(0)
    vae, disc = (m.to(device) for m in strategy.build())
    theirs_vae, theirs_disc = AuthorsVAE(args.z_dim, width=args.vae_width).to(device), AuthorsDiscriminator(args.z_dim).to(device)
    theirs_vae.train()  # their sampler runs the VAE as the solver left it: train mode
    loader = ctx.eval_loader(ctx.unlabeled, image_size_override=[args.vae_size] * 2, batch_size_override=args.vae_batch)
    batches = [x.to(device) for x, _ in loader]

    def floor():
        vae.eval()
        disc.eval()
        with torch.inference_mode():
            torch.cat([disc(vae.encode(x)[0]) for x in batches])

    runs = {
        "segal": lambda: strategy.score(ctx, vae, disc, ctx.unlabeled),
        "authors' sampler": lambda: authors_sample(theirs_vae, theirs_disc, loader, device, ctx.budget),
        "floor": floor,
    }
    best = best_of(synced(runs, device), args.repeats)
    n = len(ctx.unlabeled)
    return {"images": n, "seconds": best, "images_per_s": {k: n / t for k, t in best.items()},
            "authors_over_segal": best["authors' sampler"] / best["segal"],
            "segal_over_floor": best["segal"] / best["floor"]}


def bench_vaal_training(args, device, width: int) -> dict:
    ctx, params = vaal_setup(args, width, device)
    size, b = [args.vae_size] * 2, args.vae_batch

    def segal(mode):
        strategy = VAALStrategy(VAALStrategy.Params(**{**vars(params), "mode": mode}))

        def go():
            torch.manual_seed(0)
            vae, disc = (m.to(device) for m in strategy.build())
            strategy.train(ctx, vae, disc, ctx.labeled, ctx.unlabeled)
        return go

    def authors():
        torch.manual_seed(0)
        vae, disc = AuthorsVAE(args.z_dim, width=width).to(device), AuthorsDiscriminator(args.z_dim).to(device)
        lab = ctx.train_loader(ctx.labeled, image_size_override=size, batch_size_override=b, salt=101)
        unl = ctx.train_loader(ctx.unlabeled, image_size_override=size, batch_size_override=b, salt=102)
        authors_train(vae, disc, lab, unl, device, args.vae_steps)

    best = best_of(synced({"segal (paper)": segal("paper"), "segal (fixed)": segal("fixed"),
                           "authors' solver": authors}, device), args.repeats)
    return {"width": width, "iterations": args.vae_steps, "seconds": best,
            "iterations_per_s": {k: args.vae_steps / t for k, t in best.items()},
            "authors_over_segal_paper": best["authors' solver"] / best["segal (paper)"],
            "authors_over_segal_fixed": best["authors' solver"] / best["segal (fixed)"]}


# ============================================================ (c) task training, (d) sharing
def task_pool(args) -> Dataset:
    """Demo scenes rendered at ``--task-source`` (larger than the working size, as real photos are), or CamVid."""
    from segal.data import DATASETS

    if args.camvid:
        return Head(DATASETS.get("camvid")(str(args.camvid), "train"), args.task_pool)
    return DATASETS.get("demo")(None, "train", size=tuple(args.task_source), n_train=args.task_pool)


class Head(Dataset):
    """The first ``n`` items of a dataset, file paths included (so the cache keys on them)."""

    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n, self.task, self.classes = dataset, min(n, len(dataset)), dataset.task, dataset.classes

    def __len__(self):
        return self.n

    def image_id(self, i):
        return self.dataset.image_id(i)

    def image_path(self, i):
        return self.dataset.image_path(i)

    def target_path(self, i):
        return self.dataset.target_path(i)

    def load_image(self, i):
        return self.dataset.load_image(i)

    def load_target(self, i):
        return self.dataset.load_target(i)


def build_task_model(num_classes: int) -> nn.Module:
    return MODELS.get("deeplabv3plus")(num_classes, encoder="resnet18", weights=None)


def bare_steps(model, batches, steps: int, lr: float, ignore: int, amp: bool = False) -> None:
    """The floor: forward, cross-entropy, backward, Adam step on tensors already in memory."""
    from segal.device import autocast, grad_scaler

    device = batches[0][0].device
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    scaler = grad_scaler(device, amp)
    model.train()
    for k in range(steps):
        x, y = batches[k % len(batches)]
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=ignore)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        loss.item()


def bench_task_step(args, device, tmp: Path) -> dict:
    from segal.data.train_cache import TrainingCache

    pool = task_pool(args)
    indices = np.arange(len(pool))
    size = list(args.task_size)
    cfg = TrainConfig(steps=args.task_steps, batch_size=args.task_batch, optimizer="adam", lr=1e-3, schedule="poly",
                      amp="on" if args.amp else "off")
    compute = Compute(device, size, amp=args.amp, batch_size=args.task_batch)
    cached = TrainingCache(pool, size, tmp / "cache")
    for i in indices:  # filled once, as the first cycle does; later cycles read it
        cached.load_image(int(i))
    num_classes, ignore = len(pool.classes), pool.classes.ignore_index
    loader = make_loader(pool, indices, size=size, batch_size=args.task_batch, train=True, with_targets=True,
                         seed=0, drop_last=True)
    batches = [(x.to(device), y.to(device)) for x, y, _ in loader]

    def segal(dataset):
        def go():
            torch.manual_seed(0)
            segal_train(build_task_model(num_classes), dataset, indices, cfg, compute=compute, seed=0)
        return go

    def bare():
        torch.manual_seed(0)
        bare_steps(build_task_model(num_classes).to(device), batches, args.task_steps, cfg.lr, ignore, args.amp)

    best = best_of(synced({"segal (uncached)": segal(pool), "segal (cached)": segal(cached), "bare step": bare},
                          device), args.repeats)
    source = pool.load_image(0).shape[:2]
    return {"steps": args.task_steps, "batch": args.task_batch, "size": size, "source": list(source),
            "cache_shape": list(cached.shape), "seconds": best,
            "steps_per_s": {k: args.task_steps / t for k, t in best.items()},
            "cached_over_bare": best["segal (cached)"] / best["bare step"],
            "uncached_over_bare": best["segal (uncached)"] / best["bare step"]}


def share_worker(args) -> None:
    """(d)'s child: bare steps at the task size; prints steps/s as JSON on its last line."""
    torch.set_num_threads(args.worker_threads)
    torch.manual_seed(0)
    h, w = args.task_size
    model = build_task_model(8).to("cpu")
    batches = [(torch.randn(args.task_batch, 3, h, w), torch.randint(0, 8, (args.task_batch, h, w)))]
    bare_steps(model, batches, 1, 1e-3, 255)  # warm-up
    t0 = time.perf_counter()
    bare_steps(model, batches, args.share_steps, 1e-3, 255)
    print(json.dumps({"steps_per_s": args.share_steps / (time.perf_counter() - t0)}))


def _children(args, count: int, threads: int) -> list[float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--share-worker", "--worker-threads", str(threads),
           "--share-steps", str(args.share_steps), "--task-batch", str(args.task_batch),
           "--task-size", *map(str, args.task_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    rates = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        if p.returncode:
            raise RuntimeError(f"share worker failed with exit code {p.returncode}")
        rates.append(json.loads(out.strip().splitlines()[-1])["steps_per_s"])
    return rates


def bench_sharing(args) -> dict:
    cores = usable_cores()
    alone = _children(args, 1, choose_threads(None, cores=cores, env=os.environ))[0]
    divided = _children(args, 2, choose_threads(None, cores=cores, env=os.environ, jobs=2))
    greedy = _children(args, 2, cores)
    return {"cores": cores, "alone_steps_per_s": alone, "two_divided_steps_per_s": divided,
            "two_all_cores_steps_per_s": greedy,
            "each_of_two_over_alone_divided": float(np.mean(divided)) / alone,
            "each_of_two_over_alone_all_cores": float(np.mean(greedy)) / alone}


def _demo_runs(recipe: Path, count: int, tmp: Path, extra: list[str]) -> list[dict]:
    """``count`` runs of ``segal acquire RECIPE`` started at once, each in its own directory, as a user
    types it (each picks its own threads: segal's rule); wall time and final mIoU of each."""
    procs = []
    for k in range(count):
        out = tmp / f"demo-{count}-{k}"
        cmd = [sys.executable, "-c", "import sys; from segal.cli import main; sys.exit(main(sys.argv[1:]))",
               "acquire", str(recipe), "--output-dir", str(out), "--quiet", *extra]  # the `segal` command's entry
        procs.append((out, time.perf_counter(), subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                                 text=True)))
    results = []
    for out, t0, p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode:
            raise RuntimeError(f"segal acquire failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
        cycles = sorted((out / "cycles").iterdir(), key=lambda d: int(d.name))
        mious = [json.loads((c / "metrics.json").read_text())["miou"] for c in cycles]
        results.append({"seconds": time.perf_counter() - t0, "miou": [round(100 * m, 2) for m in mious]})
    return results


def bench_demo(args, tmp: Path) -> dict:
    """(e) The built-in demo end to end: alone, then two at once (the second segal process)."""
    extra = ["--steps", "3", "--cycles", "1"] if args.quick else []
    alone = _demo_runs(ROOT / "recipes" / "demo.yaml", 1, tmp, extra)[0]
    pair = _demo_runs(ROOT / "recipes" / "demo.yaml", 2, tmp, extra)
    return {"alone": alone, "two_at_once": pair,
            "two_at_once_over_alone": max(r["seconds"] for r in pair) / alone["seconds"]}


# ============================================================ report
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--sections", default="scoring,vaal_training,task_step,sharing",
                        help="any of scoring, vaal_training, task_step, sharing, demo (the last: `segal acquire "
                             "recipes/demo.yaml` alone and two at once, ≈ 4 min; not in the default)")
    parser.add_argument("--pool", type=int, help="VAAL pool images (paper-width default 1,843)")
    parser.add_argument("--vae-width", type=int, help="VAE first-layer channels at the paper's width (128)")
    parser.add_argument("--cpu-width", type=int, help="the CPU width of (b)'s second comparison (32)")
    parser.add_argument("--z-dim", type=int)
    parser.add_argument("--vae-size", type=int, help="VAE input side (the authors' model takes 32 only)")
    parser.add_argument("--vae-batch", type=int)
    parser.add_argument("--vae-steps", type=int, help="VAAL iterations timed in (b)")
    parser.add_argument("--task-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--task-source", type=int, nargs=2, metavar=("H", "W"), help="generated images' size in (c)")
    parser.add_argument("--task-batch", type=int)
    parser.add_argument("--task-steps", type=int)
    parser.add_argument("--task-pool", type=int)
    parser.add_argument("--camvid", type=Path, help="CamVid root: (c) trains on its first --task-pool PNGs")
    parser.add_argument("--share-steps", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--threads", type=int, help="intra-op threads of (a)–(c) (default: segal's rule)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true",
                        help="segal's paths with autocast (float16 + grad scaler on CUDA); the authors' stay float32")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--share-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else PAPER).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - {"scoring", "vaal_training", "task_step", "sharing", "demo"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    return args


def _table(console, title: str, seconds: dict, rate: dict, unit: str) -> None:
    t = Table(title=title)
    for col in ("path", unit, "seconds"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for name, secs in seconds.items():
        t.add_row(name, f"{rate[name]:,.2f}", f"{secs:.3f}")
    console.print(t)


def _verdict(value: float, aim: float, at_least: bool) -> str:
    good = value >= aim if at_least else value <= aim
    return f"{value:.2f}× (aim {'≥' if at_least else '≤'} {aim}) " + ("[green]meets aim[/]" if good else "[red]misses aim[/]")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.share_worker:
        share_worker(args)
        return {}
    from segal.device import resolve_device

    device = resolve_device(args.device)
    threads_before = torch.get_num_threads()
    plan = configure_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 130)
    results: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                  if k not in ("share_worker", "worker_threads", "out")}}
    results["settings"].update(threads=plan.threads, cores=plan.cores, torch=torch.__version__,
                               loadavg_at_start=os.getloadavg()[0], omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    console.print("segal speed benchmark — " + ", ".join(f"{k} {v}" for k, v in results["settings"].items()))
    try:
        if "scoring" in args.sections:
            r = results["scoring"] = bench_scoring(args, device)
            _table(console, f"(a) VAAL scoring of {r['images']:,} images, width {args.vae_width}, batch {args.vae_batch}",
                   r["seconds"], r["images_per_s"], "images/s")
            console.print("authors' sampler / segal time = "
                          + _verdict(r["authors_over_segal"], AIMS["authors_over_segal_scoring"], True)
                          + ";  segal / floor time = "
                          + _verdict(r["segal_over_floor"], AIMS["segal_over_floor_scoring"], False))
        if "vaal_training" in args.sections:
            results["vaal_training"] = {}
            for label, width in (("paper_width", args.vae_width), ("cpu_width", args.cpu_width)):
                r = results["vaal_training"][label] = bench_vaal_training(args, device, width)
                _table(console, f"(b) VAAL training, {args.vae_steps} iterations, width {width}, batch {args.vae_batch}",
                       r["seconds"], r["iterations_per_s"], "iterations/s")
                console.print(f"authors' solver / segal time at width {width}: paper mode "
                              + _verdict(r["authors_over_segal_paper"], AIMS["authors_over_segal_training"], True)
                              + f", fixed mode {r['authors_over_segal_fixed']:.2f}×")
        if "task_step" in args.sections:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                r = results["task_step"] = bench_task_step(args, device, Path(tmp))
            _table(console, f"(c) task training, {r['steps']} steps of batch {r['batch']} at {r['size']} "
                            f"(images {r['source']}, cache {r['cache_shape']})", r["seconds"], r["steps_per_s"], "steps/s")
            console.print("segal (cached) / bare step time = "
                          + _verdict(r["cached_over_bare"], AIMS["cached_over_bare_task_step"], False)
                          + f";  uncached / bare = {r['uncached_over_bare']:.2f}×")
        if "sharing" in args.sections:
            r = results["sharing"] = bench_sharing(args)
            console.print(f"(d) sharing {r['cores']} cores: alone {r['alone_steps_per_s']:.2f} steps/s; two at once, "
                          f"threads divided: {', '.join(f'{v:.2f}' for v in r['two_divided_steps_per_s'])} "
                          f"(each {r['each_of_two_over_alone_divided']:.2f}× alone, aim ≈ 0.5); two at once, every core "
                          f"each: {', '.join(f'{v:.2f}' for v in r['two_all_cores_steps_per_s'])} "
                          f"({r['each_of_two_over_alone_all_cores']:.2f}×)")
        if "demo" in args.sections:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                r = results["demo"] = bench_demo(args, Path(tmp))
            console.print(f"(e) demo: alone {r['alone']['seconds']:.1f} s (aim ≤ 100 s on 2 idle cores), mIoU "
                          f"{' → '.join(map(str, r['alone']['miou']))}; two at once "
                          f"{', '.join(format(x['seconds'], '.1f') for x in r['two_at_once'])} s "
                          f"({r['two_at_once_over_alone']:.2f}× alone, aim ≤ 2)")
        if args.out:
            atomic_write_json(args.out, results)
        return results
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
