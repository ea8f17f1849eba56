"""DRN segmenters: the authors' checkpoint layout, output stride 8, weights handling."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch

from segal.errors import UserError
from segal.models import MODELS
from segal.models.drn import DRN, VARIANTS, WEBROOT

# Keys/shapes of the authors' ImageNet models (fc included), derived from fyu/drn drn.py, not from segal.
AUTHORS = json.loads((Path(__file__).parent / "data" / "drn_keys.json").read_text())
# Parameter counts (with the 1000-class fc) from the fyu/drn README table, in millions.
README_PARAMS_M = {
    "drn_c_26": 21.1,
    "drn_c_42": 31.2,
    "drn_c_58": 41.6,
    "drn_d_22": 16.4,
    "drn_d_38": 26.5,
    "drn_d_54": 35.8,
    "drn_d_105": 54.8,
}
FC_PARAMS = 512 * 1000 + 1000


def fake_checkpoint(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in for the authors' file: their keys and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in AUTHORS[variant].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand(shape, generator=g) + 0.5  # positive: also valid running_var
    return state


def test_all_variants_registered():
    assert set(VARIANTS) <= set(MODELS.names())
    assert set(VARIANTS) == {k for k in AUTHORS if not k.startswith("_")}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_backbone_matches_authors_checkpoint_layout(variant):
    ours = {k: list(v.shape) for k, v in DRN(VARIANTS[variant]).state_dict().items()}
    theirs = {k: v for k, v in AUTHORS[variant].items() if not k.startswith("fc.")}
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    params = sum(p.numel() for p in DRN(VARIANTS[variant]).parameters()) + FC_PARAMS
    assert round(params / 1e6, 1) == README_PARAMS_M[variant]


def test_segmenter_keys_are_backbone_plus_head():
    model = MODELS.get("drn_d_22")(7)
    keys = set(model.state_dict())
    backbone = {k for k in AUTHORS["drn_d_22"] if not k.startswith("fc.")}
    assert keys - backbone == {"seg.weight", "seg.bias"}
    assert backbone <= keys
    assert model.seg.weight.shape == (7, 512, 1, 1)


def test_dilations_and_strides_follow_the_paper():
    d22 = DRN(VARIANTS["drn_d_22"])
    assert d22.layer0[0].kernel_size == (7, 7) and d22.layer0[0].stride == (1, 1)
    assert d22.layer2[0].stride == (2, 2)
    assert d22.layer3[0].conv1.stride == (2, 2) and d22.layer4[0].conv1.stride == (2, 2)
    assert [d22.layer5[i].conv1.dilation for i in range(2)] == [(2, 2)] * 2
    assert [d22.layer6[i].conv2.dilation for i in range(2)] == [(4, 4)] * 2
    assert d22.layer7[0].dilation == (2, 2) and d22.layer8[0].dilation == (1, 1)
    d54 = DRN(VARIANTS["drn_d_54"])
    assert d54.layer6[0].conv2.dilation == (4, 4) and d54.layer6[0].conv1.kernel_size == (1, 1)


def test_drn_c_degridding_stages_have_no_skip_connection():
    model = DRN(VARIANTS["drn_c_26"]).eval()
    x = torch.rand(1, 512, 4, 4) + 0.1
    for stage, residual in ((model.layer7, False), (model.layer6, True)):
        with torch.no_grad():
            stage[-1].bn2.weight.zero_()
            stage[-1].bn2.bias.zero_()
            out = stage[-1](x)
        assert bool(out.abs().sum() > 0) is residual


@pytest.mark.parametrize("variant", ["drn_c_26", "drn_d_22", "drn_d_38"])
def test_output_stride_8_and_input_size_output(variant):
    torch.manual_seed(0)
    model = MODELS.get(variant)(5, encoder="resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.features(x).shape == (2, 512, 8, 8)
        assert model(x).shape == (2, 5, 64, 64)
        assert model.embed(x).shape == (2, 512)
        assert model(torch.randn(1, 3, 70, 54)).shape == (1, 5, 70, 54)


def test_authors_checkpoint_file_loads_without_renaming(tmp_path):
    ckpt = fake_checkpoint("drn_d_22")
    path = tmp_path / "drn_d_22-4bd2f8ea.pth"
    torch.save(ckpt, path)
    model = MODELS.get("drn_d_22")(4, weights=str(path))
    state = model.state_dict()
    for key, value in ckpt.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert model.seg.weight.shape == (4, 512, 1, 1)


def test_wrong_variant_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "d38.pth"
    torch.save(fake_checkpoint("drn_d_38"), path)
    with pytest.raises(UserError, match="d38.pth"):
        MODELS.get("drn_d_22")(4, weights=str(path))
    partial = {k: v for k, v in fake_checkpoint("drn_d_22").items() if not k.startswith("layer8.")}
    torch.save(partial, path)
    with pytest.raises(UserError, match="missing"):
        MODELS.get("drn_d_22")(4, weights=str(path))


def test_round_trip_save_load_weights_only(tmp_path):
    torch.manual_seed(0)
    model = MODELS.get("drn_d_22")(3).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    assert set(torch.load(path, weights_only=True)) == set(model.state_dict())
    torch.manual_seed(1)
    again = MODELS.get("drn_d_22")(3, weights=str(path)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(UserError, match="fit"):
        MODELS.get("drn_d_22")(5, weights=str(path))  # different number of classes


def test_imagenet_offline_is_a_one_line_user_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as info:
        MODELS.get("drn_d_22")(4, weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "drn_d_22-4bd2f8ea.pth" in message and "local path" in message


def test_imagenet_download_loads_backbone(monkeypatch):
    ckpt = fake_checkpoint("drn_c_26", seed=3)
    urls = []

    def download(url, **kwargs):
        urls.append(url)
        assert kwargs.get("weights_only") is True
        return ckpt

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    model = MODELS.get("drn_c_26")(4, weights="imagenet")
    assert urls == [WEBROOT + "drn_c_26-ddedf421.pth"]
    assert torch.equal(
        model.state_dict()["layer3.0.downsample.0.weight"], ckpt["layer3.0.downsample.0.weight"]
    )
    assert torch.equal(model.conv1.weight, ckpt["conv1.weight"])


def test_dropout_changes_outputs_in_train_mode_only():
    torch.manual_seed(0)
    model = MODELS.get("drn_d_22")(3, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
        plain = MODELS.get("drn_d_22")(3).train()
        assert torch.equal(plain(x), plain(x))


def test_bad_options_and_variants_are_user_errors():
    with pytest.raises(UserError, match="no option"):
        MODELS.get("drn_d_22")(3, output_stride=16)
    with pytest.raises(UserError, match="unknown DRN variant"):
        MODELS.get("drn")(3, encoder="resnet18")
    assert MODELS.get("drn")(3, encoder="drn_c_26").arch == "C"
