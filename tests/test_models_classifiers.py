"""Classification task networks: shapes, parameter counts against torchvision, dropout, weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from segal.errors import UserError
from segal.models import MODELS

TV = {"vgg16_bn": torchvision.models.vgg16_bn, "resnet18": torchvision.models.resnet18}
EMBED_DIM = {"vgg16_bn": 4096, "resnet18": 512}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet18"])
@pytest.mark.parametrize("size", [32, 224])
def test_output_and_embed_shapes(name, size):
    torch.manual_seed(0)
    model = MODELS.get(name)(10, encoder="resnet18", input_size=size).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits, features = model(x), model.embed(x)
        head = model.fc if name == "resnet18" else model.classifier[-1]
        assert torch.allclose(head(features), logits, atol=1e-5)  # embed is the penultimate layer
    assert logits.shape == (2, 10)
    assert features.shape == (2, EMBED_DIM[name])


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet18"])
def test_224_variants_equal_torchvision(name):
    ours = MODELS.get(name)(10, input_size=224)
    theirs = TV[name](num_classes=10)
    assert n_params(ours) == n_params(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_32_variants_parameter_counts():
    tv_vgg, tv_resnet = n_params(TV["vgg16_bn"](num_classes=10)), n_params(TV["resnet18"](num_classes=10))
    # VGG: first linear sees 512 (1×1 pool) instead of 512·7·7 inputs.
    assert n_params(MODELS.get("vgg16_bn")(10, input_size=32)) == tv_vgg - (512 * 49 - 512) * 4096
    # ResNet: 3×3 stem instead of 7×7 (no bias), maxpool removed.
    assert n_params(MODELS.get("resnet18")(10, input_size=32)) == tv_resnet - (49 - 9) * 3 * 64
    # pool=7 restores the VAAL authors' layout (torchvision's, replicated 1×1 map).
    authors = MODELS.get("vgg16_bn")(10, input_size=32, pool=7)
    assert n_params(authors) == tv_vgg
    with torch.no_grad():
        assert authors.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_resnet18_small_input_keeps_resolution():
    model = MODELS.get("resnet18")(10, input_size=32)
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)


@pytest.mark.parametrize("name,default_has_dropout", [("resnet18", False), ("vgg16_bn", True)])
def test_dropout_changes_outputs_in_train_mode_only(name, default_has_dropout):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model = MODELS.get(name)(10, dropout=0.5).train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
        none = MODELS.get(name)(10, dropout=0.0).train()
        assert torch.equal(none(x), none(x))
        default = MODELS.get(name)(10).train()
        assert torch.equal(default(x), default(x)) is not default_has_dropout


def test_imagenet_offline_is_a_user_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    for name, file in (("resnet18", "resnet18-f37072fd.pth"), ("vgg16_bn", "vgg16_bn-6c64b313.pth")):
        with pytest.raises(UserError) as info:
            MODELS.get(name)(10, weights="imagenet", input_size=224)
        assert file in str(info.value) and "\n" not in str(info.value)


def test_imagenet_weights_load_all_but_the_class_layer(monkeypatch):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: imagenet)
    big = MODELS.get("resnet18")(10, weights="imagenet", input_size=224).state_dict()
    small = MODELS.get("resnet18")(10, weights="imagenet", input_size=32).state_dict()
    assert torch.equal(big["conv1.weight"], imagenet["conv1.weight"])
    assert torch.equal(small["layer4.1.conv2.weight"], imagenet["layer4.1.conv2.weight"])
    assert small["conv1.weight"].shape == (64, 3, 3, 3)  # CIFAR stem stays random
    assert big["fc.weight"].shape == (10, 512)

    vgg = torchvision.models.vgg16_bn().state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: vgg)
    ours = MODELS.get("vgg16_bn")(10, weights="imagenet", input_size=32).state_dict()
    assert torch.equal(ours["features.0.weight"], vgg["features.0.weight"])
    assert torch.equal(ours["features.41.running_var"], vgg["features.41.running_var"])
    assert torch.equal(ours["classifier.3.weight"], vgg["classifier.3.weight"])
    assert ours["classifier.0.weight"].shape == (4096, 512)


def test_round_trip_and_bad_options(tmp_path):
    torch.manual_seed(0)
    model = MODELS.get("resnet18")(10, dropout=0.3).eval()
    path = tmp_path / "resnet.pt"
    torch.save(model.state_dict(), path)
    again = MODELS.get("resnet18")(10, weights=str(path)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(UserError, match="fit"):
        MODELS.get("resnet18")(10, weights=str(path), input_size=224)
    with pytest.raises(UserError, match="input_size"):
        MODELS.get("vgg16_bn")(10, input_size=64)
    with pytest.raises(UserError, match="no option"):
        MODELS.get("resnet18")(10, small_input=True)


def test_resnet18_stem_option_overrides_the_input_size_pairing():
    imagenet_stem = MODELS.get("resnet18")(10, input_size=32, stem="imagenet").eval()
    assert imagenet_stem.conv1.kernel_size == (7, 7) and isinstance(imagenet_stem.maxpool, torch.nn.MaxPool2d)
    with torch.no_grad():  # 32 → 8 after the stem → 1×1 before pooling: still one logit row per image
        assert imagenet_stem(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert MODELS.get("resnet18")(10, input_size=224, stem="cifar").conv1.kernel_size == (3, 3)
    with pytest.raises(UserError, match="stem"):
        MODELS.get("resnet18")(10, stem="vit")
