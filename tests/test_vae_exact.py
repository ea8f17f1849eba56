"""The VAE's faster formulations compute the authors' function: values and gradients against the
plain layers (nn.Linear then nn.ConvTranspose2d; a oneDNN nn.Conv2d).  Checked in float64, where
both agree to 1e-10: in float32 the train-mode BatchNorm backward amplifies rounding in *either*
path (the plain one's float32 gradient is itself 3% off its float64 value on the 64-px case)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segal.models.vaal import VAE, _Conv4x2


def _close(a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    """Equal up to float64 rounding: the largest difference within 1e-10 of the largest value."""
    scale = float(b.detach().abs().max())
    assert float((a - b).detach().abs().max()) <= 1e-10 * scale + 1e-12, f"{what}: {float((a - b).abs().max())} vs scale {scale}"


def _grads(model: nn.Module, out: torch.Tensor, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (out * probe).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("batch", "size"), [(40, 32), (8, 32), (36, 64)])
def test_low_rank_decoder_equals_linear_then_transposed_conv(batch, size):
    torch.manual_seed(0)
    vae = VAE(z_dim=6, size=size, width=8).double()
    z = torch.randn(batch, 6, dtype=torch.float64, requires_grad=True)
    side = vae.dec_side

    def plain(z):  # the authors' order: Linear, View, ConvTranspose2d, ...
        return vae.decoder(vae.fc_dec(z).view(-1, 64, side, side))

    ref = plain(z)
    probe = torch.randn_like(ref)
    ref_grads = _grads(vae, ref, probe)
    ref_z = torch.autograd.grad((plain(z) * probe).sum(), z)[0]
    fast = vae.decode(z)
    _close(fast, ref, "output")
    fast_grads = _grads(vae, fast, probe)
    assert fast_grads.keys() == ref_grads.keys()
    for name, g in fast_grads.items():
        _close(g, ref_grads[name], name)
    _close(torch.autograd.grad((vae.decode(z) * probe).sum(), z)[0], ref_z, "dz")


def test_a_shared_basis_gives_the_same_reconstruction():
    torch.manual_seed(1)
    vae = VAE(z_dim=4, size=32, width=8)
    x = torch.rand(12, 3, 32, 32)
    torch.manual_seed(2)
    alone = vae(x)[0]
    torch.manual_seed(2)
    shared = vae(x, vae.decoder_basis())[0]
    torch.testing.assert_close(shared, alone)


@pytest.mark.parametrize("side", [2, 4, 8])
def test_gemm_convolution_equals_the_library_one(side):
    torch.manual_seed(0)
    conv = _Conv4x2(6, 5, 4, 2, 1, bias=False).double()
    x = torch.randn(3, 6, side, side, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, conv.weight, stride=2, padding=1)
    out = conv(x)
    _close(out, ref, "output")
    probe = torch.randn_like(ref)
    gx, gw = torch.autograd.grad((out * probe).sum(), (x, conv.weight))
    rx, rw = torch.autograd.grad((ref * probe).sum(), (x, conv.weight))
    _close(gx, rx, "dx")
    _close(gw, rw, "dw")


def test_checkpoints_keep_their_keys():
    """The reformulations add no parameter: a checkpoint of the plain model loads unchanged."""
    keys = set(VAE(z_dim=8, size=32, width=8).state_dict())
    assert "encoder.9.weight" in keys and "decoder.0.weight" in keys and "fc_dec.weight" in keys
    assert not any("basis" in k for k in keys)
