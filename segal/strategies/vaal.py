"""VAAL: Variational Adversarial Active Learning (Sinha, Ebrahimi, Darrell, ICCV 2019).

A β-VAE learns a latent space from labeled *and* unlabeled images while a discriminator on the
posterior mean μ learns to tell the two pools apart; the VAE is also trained to fool it.  The
``budget`` unlabeled images the discriminator finds least "labeled" are acquired.  Nothing here
touches the task network (``needs_model = False``): VAAL runs on a pool with no task model at all.

Two modes (see docs/vaal.md for every difference and why):

* ``paper`` — the authors' arithmetic: sigmoid + ``BCELoss``, KL summed over batch and latent, and
  scoring as their sampler does it (VAE in train mode, so μ depends on the batch through
  BatchNorm, and a random horizontal flip) — seeded here, unlike theirs.
* ``fixed`` (default) — ``BCEWithLogits``, a per-sample KL, scoring with the VAE and
  discriminator in eval mode and no augmentation, in a deterministic order.

Both re-initialise the VAE and discriminator every cycle (``warm_start`` is an opt-in extension),
measure the discriminator's AUROC out of sample (on held-out images when ``holdout`` gives at least
``auroc_min`` per pool, else cross-fitted on two halves) with its 95% Hanley–McNeil interval, and
checkpoint the trained pair in the cycle directory so that a resumed acquisition does not retrain.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from segal import distributed as dist
from segal.checkpoint import load_checkpoint, save_checkpoint
from segal.crashpoints import crash_point
from segal.device import autocast, grad_scaler
from segal.errors import UserError
from segal.metrics import auroc, auroc_interval
from segal.models.vaal import VAE, Discriminator, adversarial_loss, discriminator_loss, vae_loss
from segal.strategies.base import (
    AcquisitionContext,
    Selection,
    Strategy,
    register_strategy,
    scores_of,
    top_k_lowest,
)
from segal.strategies.kcenter import kcenter_greedy

CHECKPOINT = "vaal.pt"


def _adam(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """The authors' Adam, as one fused kernel where PyTorch has it (CPU and CUDA): the same update
    rule, about 7× faster on the paper-width VAE's 23 M parameters on our CPUs (80 → 12 ms a step)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))


def _forever(loader) -> Iterator:
    """Cycle a loader; each pass reshuffles (the sampler draws a fresh order per epoch)."""
    while True:
        yield from loader


@register_strategy("vaal")
class VAALStrategy(Strategy):
    needs_model = False
    lowest_first = True  # it acquires the images the discriminator finds least "labeled-looking"

    @dataclass
    class Params:
        mode: Literal["fixed", "paper"] = "fixed"
        image_size: int = 32  # VAE input side (the authors': 32; 64 or 128 for segmentation images)
        z_dim: int = 32  # latent size (the authors' default; 128 for segmentation, their advice)
        width: int = 128  # first conv's channels (paper: 128 → 1024); 32 is a practical CPU width
        disc_layers: int = 5  # the paper's 5-layer MLP; 3 is the authors' last commit
        beta: float = 1.0
        adversary_weight: float = 1.0  # λ2; λ1 is 1 as in the authors' code
        lr: float = 5e-4  # Adam, VAE and discriminator
        batch_size: int = 128
        epochs: float = 100.0  # passes over the whole pool (labeled + unlabeled), counted as the authors do
        steps: int | None = None  # iterations per cycle; overrides epochs
        vae_steps: int = 2
        disc_steps: int = 1
        kl_reduction: Literal["auto", "sum", "mean"] = "auto"  # auto: sum in paper mode, mean in fixed
        holdout: float = 0.1  # at most this share of the labeled set is held back (with as many unlabeled) for AUROC
        auroc_min: int = 32  # fewer held-out images than this per pool: cross-fit the AUROC instead
        warm_start: bool = False  # start from the previous cycle's VAE and discriminator
        diversity_factor: int = 0  # k > 1: top k·b by score, then k-center greedy on μ picks b

        def __post_init__(self):
            """Checked when the recipe is read, so a bad value fails before cycle 0 trains."""
            if self.image_size < 16 or self.image_size % 16:
                raise UserError(f"VAAL image_size {self.image_size} is not a multiple of 16",
                                fix="use e.g. 32, 64 or 128 in active.strategy_params.image_size")
            if min(self.z_dim, self.width, self.batch_size, self.vae_steps, self.disc_steps, self.disc_layers) < 1:
                raise UserError("VAAL z_dim, width, batch_size, vae_steps, disc_steps and disc_layers must be positive",
                                fix="check active.strategy_params")
            if (self.steps is not None and self.steps < 1) or (self.steps is None and not self.epochs > 0):
                raise UserError("VAAL steps (or epochs, when steps is unset) must be positive",
                                fix="check active.strategy_params.steps and .epochs")
            if not 0 <= self.holdout < 1:
                raise UserError(f"VAAL holdout {self.holdout} must be in [0, 1)", fix="e.g. 0.1")
            if self.auroc_min < 1:
                raise UserError(f"VAAL auroc_min {self.auroc_min} must be at least 1", fix="e.g. 32")
            if self.diversity_factor == 1 or self.diversity_factor < 0:
                raise UserError("VAAL diversity_factor must be 0 (off) or at least 2", fix="e.g. 4")

    # ------------------------------------------------------------------ helpers
    @property
    def paper(self) -> bool:
        return self.params.mode == "paper"

    @property
    def kl_reduction(self) -> str:
        r = self.params.kl_reduction
        return ("sum" if self.paper else "mean") if r == "auto" else r

    def build(self) -> tuple[VAE, Discriminator]:
        p = self.params
        return VAE(p.z_dim, p.image_size, p.width), Discriminator(p.z_dim, p.disc_layers)

    def auroc_method(self, ctx: AcquisitionContext) -> str:
        """How the discriminator's AUROC is measured: ``holdout`` when ``holdout`` × labeled gives at least
        ``auroc_min`` images per pool; else ``crossfit`` (two extra trainings on halves, each scoring the
        other half: every labeled image is scored out of sample, and nothing is held back from the
        acquisition model); ``train`` (on training images, optimistic) when ``holdout`` is 0 or the
        labeled set has fewer than 2 images."""
        p = self.params
        n = int(round(p.holdout * len(ctx.labeled)))
        if p.holdout == 0 or len(ctx.labeled) < 2:
            return "train"
        if n >= p.auroc_min and n <= min(len(ctx.labeled) - 1, len(ctx.unlabeled) - ctx.budget):
            return "holdout"
        return "crossfit"

    def split_holdout(self, ctx: AcquisitionContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train labeled, train unlabeled, held-out labeled, held-out unlabeled), seeded."""
        n = int(round(self.params.holdout * len(ctx.labeled)))
        n = min(n, len(ctx.labeled) - 1, len(ctx.unlabeled) - ctx.budget)
        if n < 1 or self.auroc_method(ctx) != "holdout":
            empty = np.empty(0, np.int64)
            return ctx.labeled, ctx.unlabeled, empty, empty
        rng = ctx.generator(salt=31)
        hl = np.sort(rng.choice(ctx.labeled, n, replace=False))
        hu = np.sort(rng.choice(ctx.unlabeled, n, replace=False))
        return np.setdiff1d(ctx.labeled, hl), np.setdiff1d(ctx.unlabeled, hu), hl, hu

    # ------------------------------------------------------------------ training
    def _forward(self, vae: VAE, xl: torch.Tensor, xu: torch.Tensor):
        """Paper: one forward per pool (the authors').  Fixed: one joint batch, so that BatchNorm
        statistics are shared — per-pool batch statistics would normalise away the very difference
        between the pools that the discriminator has to see, and differ from the running statistics
        used at scoring time."""
        if self.paper:  # the decoder's basis images depend on the parameters only: computed once for both
            basis = vae.decoder_basis() if min(len(xl), len(xu)) > vae.z_dim + 1 else None
            rl, _, mul, lvl = vae(xl, basis)
            ru, _, muu, lvu = vae(xu, basis)
            return rl, mul, lvl, ru, muu, lvu
        recon, _, mu, logvar = vae(torch.cat([xl, xu]))
        n = len(xl)
        return recon[:n], mu[:n], logvar[:n], recon[n:], mu[n:], logvar[n:]

    def _encode(self, vae: VAE, xl: torch.Tensor, xu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.paper:
            return vae.encode(xl)[0], vae.encode(xu)[0]
        mu = vae.encode(torch.cat([xl, xu]))[0]
        return mu[: len(xl)], mu[len(xl):]

    def train(self, ctx: AcquisitionContext, vae: VAE, disc: Discriminator, labeled: np.ndarray,
              unlabeled: np.ndarray) -> dict:
        p = self.params
        size = [p.image_size, p.image_size]
        salt = 1000 * dist.rank()  # ranks draw different batches; gradients are averaged below
        lab_iter = _forever(ctx.train_loader(labeled, image_size_override=size, batch_size_override=p.batch_size,
                                             salt=101 + salt))
        unl_iter = _forever(ctx.train_loader(unlabeled, image_size_override=size, batch_size_override=p.batch_size,
                                             salt=102 + salt))
        steps = p.steps if p.steps is not None else math.ceil(
            p.epochs * (len(labeled) + len(unlabeled)) / (p.batch_size * dist.world()))
        opt_vae, opt_disc = _adam(vae, p.lr, ctx.device), _adam(disc, p.lr, ctx.device)
        scaler_vae, scaler_disc = grad_scaler(ctx.device, ctx.amp), grad_scaler(ctx.device, ctx.amp)
        vae.train()
        disc.train()
        history: dict[str, list[float]] = {"vae": [], "disc": [], "recon_kl": []}
        t0 = time.perf_counter()

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            return (next(lab_iter)[0].to(ctx.device, non_blocking=True),
                    next(unl_iter)[0].to(ctx.device, non_blocking=True))

        for _ in ctx.progress.track(range(steps), total=steps, description=f"VAAL training ({p.mode})"):
            for _ in range(p.vae_steps):
                xl, xu = batch()
                with autocast(ctx.device, ctx.amp):
                    rl, mul, lvl, ru, muu, lvu = self._forward(vae, xl, xu)
                    transductive = (vae_loss(xl, rl, mul, lvl, p.beta, self.kl_reduction)
                                    + vae_loss(xu, ru, muu, lvu, p.beta, self.kl_reduction))
                    adversarial = adversarial_loss(disc(mul), disc(muu), p.mode)
                    loss = transductive + p.adversary_weight * adversarial
                opt_vae.zero_grad(set_to_none=True)
                scaler_vae.scale(loss).backward()
                dist.average_gradients(vae)
                scaler_vae.step(opt_vae)
                scaler_vae.update()
            for k in range(p.disc_steps):
                if k:
                    xl, xu = batch()
                with torch.no_grad(), autocast(ctx.device, ctx.amp):  # the discriminator step needs only μ
                    mul, muu = self._encode(vae, xl, xu)
                with autocast(ctx.device, ctx.amp):
                    d_loss = discriminator_loss(disc(mul.float()), disc(muu.float()), p.mode)
                opt_disc.zero_grad(set_to_none=True)
                scaler_disc.scale(d_loss).backward()
                dist.average_gradients(disc)
                scaler_disc.step(opt_disc)
                scaler_disc.update()
            crash_point("vaal.step")
            history["vae"].append(float(loss.detach()))
            history["disc"].append(float(d_loss.detach()))
            history["recon_kl"].append(float(transductive.detach()))
            if not all(math.isfinite(v[-1]) for v in history.values()):
                raise UserError("VAAL training diverged (NaN loss)",
                                fix="lower active.strategy_params.lr or beta (the authors needed lr 5e-6 on ImageNet)")
        tail = max(1, steps // 10)
        return {"steps": steps, "seconds": round(time.perf_counter() - t0, 2),
                **{f"final_{k}_loss": float(np.mean(v[-tail:])) for k, v in history.items()}}

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, ctx: AcquisitionContext, vae: VAE, disc: Discriminator, indices: np.ndarray,
              description: str = "VAAL scoring") -> tuple[np.ndarray, np.ndarray]:
        """P(labeled) for each index, sharded across ranks; returns (indices, scores) sorted by index."""
        p = self.params
        vae.train(self.paper)  # paper mode: BN batch statistics, as the authors' sampler left it
        disc.eval()
        flip_rng = torch.Generator().manual_seed(int(ctx.generator(salt=41).integers(2**31)))
        loader = ctx.eval_loader(dist.shard(indices), image_size_override=[p.image_size] * 2,
                                 batch_size_override=p.batch_size)
        out_idx, out_scores = [], []
        for images, idx in ctx.progress.track(loader, total=len(loader), description=description):
            if self.paper:  # the authors scored through the training transform (a random flip)
                flip = torch.rand(len(images), generator=flip_rng) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            images = images.to(ctx.device, non_blocking=True)
            with autocast(ctx.device, ctx.amp):
                mu = vae.encode(images)[0]
            out_scores.append(torch.sigmoid(disc(mu.float())).double().cpu().numpy().copy())  # see scoring's doc
            out_idx.append(np.asarray(idx).astype(np.int64))
            crash_point("score.batch")
        local = (np.concatenate(out_idx) if out_idx else np.empty(0, np.int64),
                 np.concatenate(out_scores) if out_scores else np.empty(0))
        return dist.gather_scores(*local)

    def score_pools(self, ctx: AcquisitionContext, vae: VAE, disc: Discriminator, labeled: np.ndarray,
                    unlabeled: np.ndarray, description: str) -> tuple[np.ndarray, np.ndarray]:
        """P(labeled) of two disjoint sets from one pass over their union in index order, so that batches mix
        the pools.  In paper mode a score depends on its batch-mates (train-mode BatchNorm): each pool scored
        in batches of its own would be normalised by its own statistics, and the AUROC would measure that,
        not the discriminator.  In fixed mode (eval mode) the scores are the same either way."""
        idx, scores = self.score(ctx, vae, disc, np.union1d(labeled, unlabeled), description=description)
        return scores[np.isin(idx, labeled)], scores[np.isin(idx, unlabeled)]

    @torch.no_grad()
    def latents(self, ctx: AcquisitionContext, vae: VAE, indices: np.ndarray) -> torch.Tensor:
        """μ for ``indices`` in index order (eval mode), for the diversity step."""
        vae.eval()
        loader = ctx.eval_loader(np.sort(indices), image_size_override=[self.params.image_size] * 2,
                                 batch_size_override=self.params.batch_size)
        return torch.cat([vae.encode(x.to(ctx.device))[0].float().cpu() for x, _ in loader]) if len(indices) else \
            torch.empty(0, self.params.z_dim)

    def crossfit(self, ctx: AcquisitionContext) -> dict:
        """Cross-fitted AUROC: split labeled and unlabeled into seeded halves, train a fresh pair on one
        half of each, score the other, swap; the AUROC is taken over the pooled out-of-fold scores."""
        rng = ctx.generator(salt=37)
        lab, unl = rng.permutation(ctx.labeled), rng.permutation(ctx.unlabeled)
        halves = [(np.sort(lab[0::2]), np.sort(unl[0::2])), (np.sort(lab[1::2]), np.sort(unl[1::2]))]
        pos, neg, folds = [], [], []
        for k, (score_l, score_u) in enumerate(halves):
            fit_l, fit_u = halves[1 - k]
            torch.manual_seed(int(ctx.generator(salt=43 + k).integers(2**31)))  # the same after a resume
            vae, disc = self.build()
            vae.to(ctx.device)
            disc.to(ctx.device)
            self.train(ctx, vae, disc, fit_l, fit_u)
            s_l, s_u = self.score_pools(ctx, vae, disc, score_l, score_u, description=f"VAAL cross-fit {k + 1}/2")
            folds.append(auroc(s_l, s_u))
            pos.append(s_l)
            neg.append(s_u)
        s_l, s_u = np.concatenate(pos), np.concatenate(neg)
        return {"auroc": auroc(s_l, s_u), "folds": folds, "labeled": int(len(s_l)), "unlabeled": int(len(s_u)),
                "labeled_score_mean": float(np.mean(s_l)) if len(s_l) else None}

    def measure_auroc(self, ctx: AcquisitionContext, vae: VAE, disc: Discriminator, info: dict, idx: np.ndarray,
                      scores: np.ndarray, hold_l: np.ndarray, hold_u: np.ndarray) -> tuple[dict, dict]:
        """The discriminator's AUROC of labeled against unlabeled, out of sample where it can be (see
        :meth:`auroc_method`), with its 95% interval: ``(diagnostics, info)``.

        ``scores`` are P(labeled) of ``idx``, which hold ``hold_u``; ``hold_l``/``hold_u`` are the held-out
        sets of :meth:`split_holdout` (empty: cross-fitted or on training samples).  A cross-fit result is
        kept in ``info`` and the checkpoint, so that a resumed acquisition does not retrain it."""
        extra: dict = {}
        if len(hold_l):
            if self.paper:  # batch-dependent scores: the two held-out sets in shared batches (score_pools)
                s_l, s_u = self.score_pools(ctx, vae, disc, hold_l, hold_u, description="VAAL held-out AUROC")
            else:
                _, s_l = self.score(ctx, vae, disc, hold_l, description="VAAL held-out AUROC")
                s_u = scores[np.isin(idx, hold_u)]
            auc_on, auc, n_l, n_u = "holdout", auroc(s_l, s_u), len(s_l), len(s_u)
            labeled_mean = float(np.mean(s_l)) if len(s_l) else None
        elif self.auroc_method(ctx) == "crossfit":
            cf = info.get("crossfit")
            if cf is None:
                cf = self.crossfit(ctx)
                info = info | {"crossfit": cf}
                if dist.is_main():
                    self._save(ctx, vae, disc, {k: v for k, v in info.items() if k != "resumed_from_checkpoint"})
                dist.barrier()
            auc_on, auc, n_l, n_u, labeled_mean = "crossfit", cf["auroc"], cf["labeled"], cf["unlabeled"], \
                cf["labeled_score_mean"]
            extra = {"auroc_folds": cf["folds"]}
        else:  # holdout 0 or a single labeled sample: measured on training samples (optimistic)
            if self.paper:
                s_l, s_u = self.score_pools(ctx, vae, disc, ctx.labeled, idx, description="VAAL AUROC")
            else:
                _, s_l = self.score(ctx, vae, disc, ctx.labeled, description="VAAL AUROC")
                s_u = scores
            auc_on, auc, n_l, n_u = "train", auroc(s_l, s_u), len(s_l), len(s_u)
            labeled_mean = float(np.mean(s_l)) if len(s_l) else None
        return {"auroc": auc, "auroc_on": auc_on, "auroc_labeled": int(n_l), "auroc_unlabeled": int(n_u),
                "auroc_ci": list(auroc_interval(auc, n_l, n_u)), "auroc_ci_method": "Hanley-McNeil 1982, 95%",
                **extra, "labeled_score_mean": labeled_mean}, info

    # ------------------------------------------------------------------ checkpoints
    def _save(self, ctx: AcquisitionContext, vae: VAE, disc: Discriminator, info: dict) -> None:
        if ctx.workdir is None:
            return
        save_checkpoint(ctx.workdir / CHECKPOINT, {"vae": vae.state_dict(), "disc": disc.state_dict(),
                                                   "params": dict(vars(self.params)), "info": info})

    def _load(self, path, vae: VAE, disc: Discriminator) -> dict | None:
        if path is None or not path.exists():
            return None
        try:  # a torn or foreign file is only a cache miss (load_checkpoint's UserError included)
            state = load_checkpoint(path)
            saved = state.get("params", {})
            if any(saved.get(k) != getattr(self.params, k) for k in ("z_dim", "image_size", "width", "disc_layers")):
                return None  # a checkpoint of another configuration is not reused
            vae.load_state_dict(state["vae"])
            disc.load_state_dict(state["disc"])
        except Exception:  # a torn or foreign file is only a cache miss: VAAL retrains
            return None
        return state.get("info", {})

    # ------------------------------------------------------------------ selection
    def select(self, ctx: AcquisitionContext) -> Selection:
        p = self.params
        torch.manual_seed(int(ctx.generator(salt=29).integers(2**31)))
        vae, disc = self.build()
        vae.to(ctx.device)
        disc.to(ctx.device)
        train_l, train_u, hold_l, hold_u = self.split_holdout(ctx)

        here = ctx.workdir / CHECKPOINT if ctx.workdir is not None else None
        info = self._load(here, vae, disc)
        warm = False
        if info is None:
            if p.warm_start and ctx.workdir is not None and ctx.cycle > 0:
                warm = self._load(ctx.workdir.parent / str(ctx.cycle - 1) / CHECKPOINT, vae, disc) is not None
            info = self.train(ctx, vae, disc, train_l, train_u)
            info["warm_started"] = warm
            if dist.is_main():
                self._save(ctx, vae, disc, info)
            dist.barrier()
        else:
            info = dict(info, resumed_from_checkpoint=True)

        idx, scores = self.score(ctx, vae, disc, ctx.unlabeled)
        measured, info = self.measure_auroc(ctx, vae, disc, info, idx, scores, hold_l, hold_u)

        if p.diversity_factor:
            candidates = top_k_lowest(scores, idx, min(len(idx), p.diversity_factor * ctx.budget))
            cand_sorted = np.sort(candidates)
            picks, _, _, _ = kcenter_greedy(self.latents(ctx, vae, cand_sorted).double(),
                                            self.latents(ctx, vae, ctx.labeled).double(), ctx.budget)
            chosen = cand_sorted[picks]
        else:
            chosen = top_k_lowest(scores, idx, ctx.budget)
        quantiles = np.quantile(scores, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]) if len(scores) else []
        hist, edges = np.histogram(scores, bins=10, range=(0.0, 1.0))
        diagnostics = {
            "mode": p.mode, "kl_reduction": self.kl_reduction, "image_size": p.image_size, "z_dim": p.z_dim,
            "width": p.width, **measured,
            "pool_score_mean": float(scores.mean()), "pool_score_std": float(scores.std()),
            "pool_score_quantiles": dict(zip(["min", "p05", "p25", "p50", "p75", "p95", "max"],
                                             [float(q) for q in quantiles], strict=True)),
            "pool_score_histogram": {"edges": [float(e) for e in edges], "counts": hist.tolist()},
            "diversity_factor": p.diversity_factor,
            **info,
        }
        return Selection(indices=chosen, scores=np.array(scores_of(chosen, idx, scores)),
                         diagnostics=diagnostics)

