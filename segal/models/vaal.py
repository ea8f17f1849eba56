"""VAAL's β-VAE and discriminator, and their losses.

The architecture is the authors' (a WAE-style convolutional encoder/decoder and an MLP on the
posterior mean), generalised from their hard-wired 32×32 input to any square input divisible by 16:
four stride-2 convolutions leave ``size/16`` pixels per side, and the decoder starts at ``size/8``
as theirs does (2×2 and 4×4 for 32×32 inputs).  ``width`` is the first layer's channels (128 in the
paper, doubling per layer up to 1024); a narrower VAE (e.g. 32) makes CPU experiments practical.

The discriminator returns *logits*.  The losses below take a ``mode``: ``paper`` reproduces the
authors' arithmetic (sigmoid + ``BCELoss``, KL summed over batch and latent), ``fixed`` uses
``BCEWithLogits`` and a per-sample KL (summed over the latent, averaged over the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init(module: nn.Module) -> None:
    """Kaiming-normal weights, zero biases, BN at identity: the authors' initialisation."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class VAE(nn.Module):
    """Convolutional β-VAE on ``size×size`` RGB inputs (``size`` divisible by 16)."""

    def __init__(self, z_dim: int = 32, size: int = 32, width: int = 128):
        super().__init__()
        if size % 16 or size < 16:
            raise ValueError(f"VAE input size must be a multiple of 16, got {size}")
        self.z_dim, self.size, self.width = z_dim, size, width
        c = [width, width * 2, width * 4, width * 8]
        self.enc_side, self.dec_side = size // 16, size // 8
        self.encoder = nn.Sequential(*_down(3, c[0]), *_down(c[0], c[1]), *_down(c[1], c[2]), *_down(c[2], c[3]))
        flat = c[3] * self.enc_side**2
        self.fc_mu = nn.Linear(flat, z_dim)
        self.fc_logvar = nn.Linear(flat, z_dim)
        self.fc_dec = nn.Linear(z_dim, c[3] * self.dec_side**2)
        self.decoder = nn.Sequential(*_up(c[3], c[2]), *_up(c[2], c[1]), *_up(c[1], c[0]), nn.ConvTranspose2d(c[0], 3, 1))
        _init(self)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_dec(z).view(-1, self.width * 8, self.dec_side, self.dec_side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), z, mu, logvar


class Discriminator(nn.Module):
    """MLP from the latent mean to the logit of "labeled".

    ``layers=5`` is the paper's "5-layer MLP" (the authors' first release: z→512→512→512→512→1);
    ``layers=3`` is their last commit (z→512→512→1).
    """

    def __init__(self, z_dim: int = 32, layers: int = 5, hidden: int = 512):
        super().__init__()
        if layers < 2:
            raise ValueError("the discriminator needs at least 2 layers")
        dims = [z_dim] + [hidden] * (layers - 1)
        body: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            body += [nn.Linear(a, b), nn.ReLU(True)]
        self.net = nn.Sequential(*body, nn.Linear(dims[-1], 1))
        _init(self)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu).squeeze(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)).  ``sum``: over batch and latent (the authors'); ``mean``: per sample."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "sum":
        return kl.sum()
    if reduction == "mean":
        return kl.sum(1).mean()
    raise ValueError(f"unknown KL reduction {reduction!r}")


def bce(logits: torch.Tensor, target: float, mode: str) -> torch.Tensor:
    """Binary cross-entropy against a constant target; ``paper`` goes through a sigmoid as the authors did."""
    labels = torch.full_like(logits, float(target))
    if mode == "paper":
        return F.binary_cross_entropy(torch.sigmoid(logits.float()), labels.float())
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float, kl_reduction: str
) -> torch.Tensor:
    """Reconstruction (MSE, mean over elements) + β·KL for one pool's batch."""
    return F.mse_loss(recon.float(), x.float()) + beta * kl_divergence(mu.float(), logvar.float(), kl_reduction)


def adversarial_loss(d_labeled: torch.Tensor, d_unlabeled: torch.Tensor, mode: str) -> torch.Tensor:
    """The VAE's term: make the discriminator say "labeled" for both pools."""
    return bce(d_labeled, 1.0, mode) + bce(d_unlabeled, 1.0, mode)


def discriminator_loss(d_labeled: torch.Tensor, d_unlabeled: torch.Tensor, mode: str) -> torch.Tensor:
    return bce(d_labeled, 1.0, mode) + bce(d_unlabeled, 0.0, mode)
