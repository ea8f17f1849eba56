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


class _Conv4x2(nn.Conv2d):
    """The encoder's 4×4, stride-2 convolution; on a CPU input of at most 4×4 pixels it runs as one
    GEMM over the padded windows instead of oneDNN's convolution.

    Same function, same parameters (checkpoints are unchanged); only the order of the float sums
    differs (about 1e-6 relative).  Why: at 2×2 outputs oneDNN's backward pass costs 5–7× its
    forward on our CPUs; the GEMM's costs about 2× (tools/bench_speed.py, section b).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if x.device.type != "cpu" or h > 4 or w > 4:
            return super().forward(x)
        windows = F.pad(x, (1, 1, 1, 1)).unfold(2, 4, 2).unfold(3, 4, 2)  # (n, cin, h/2, w/2, 4, 4)
        cols = windows.permute(0, 2, 3, 1, 4, 5).reshape(n * (h // 2) * (w // 2), -1)
        out = cols @ self.weight.view(self.out_channels, -1).t()
        return out.view(n, h // 2, w // 2, self.out_channels).permute(0, 3, 1, 2)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [_Conv4x2(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


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

    def decoder_basis(self) -> torch.Tensor:
        """The first transposed convolution applied to fc_dec's weight columns and bias: (z_dim + 1, C, H, W).
        It depends on the parameters only, so one VAE step can share it between its pools."""
        side = self.dec_side
        basis = torch.cat([self.fc_dec.weight.t(), self.fc_dec.bias[None]]).view(-1, self.width * 8, side, side)
        return self.decoder[0](basis)

    def decode(self, z: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
        """``decoder(fc_dec(z))``.  The linear layer and the first transposed convolution compose to
        one linear map of ``[z, 1]``, so for a batch larger than ``z_dim + 1`` the convolution runs
        on the ``z_dim + 1`` basis images (fc_dec's weight columns and its bias) and the batch is
        their linear combination: the same function and gradients (float sums in another order,
        about 1e-6 relative) at ``(z_dim + 1) / batch`` of the cost of the decoder's widest layer —
        a quarter at the paper's batch of 128 (``basis``: :meth:`decoder_basis`, when the caller shares
        it between batches).  Nothing non-linear sits between the two layers, in
        the authors' model as here, which is what makes this exact."""
        if len(z) <= self.z_dim + 1:
            side = self.dec_side
            return self.decoder(self.fc_dec(z).view(-1, self.width * 8, side, side))
        images = self.decoder_basis() if basis is None else basis
        coords = torch.cat([z, z.new_ones(len(z), 1)], 1)
        h = (coords.to(images.dtype) @ images.flatten(1)).view(len(z), *images.shape[1:])
        return self.decoder[1:](h)

    def forward(self, x: torch.Tensor, basis: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, basis), z, mu, logvar


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
