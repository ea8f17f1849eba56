"""Local ImageNet-pretrained encoders: torchvision's and timm's ResNet state dicts load into the smp
encoder of DeepLabV3+ tensor for tensor; misfits and DRN are refused in one line, before a run writes."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from segal.cli import main
from segal.errors import UserError
from segal.models import MODELS
from tests.tiny import tiny_recipe


def saved(tmp_path, name: str, state: dict) -> str:
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    return str(path)


def torchvision_state(arch: str = "resnet18") -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(1)
    return getattr(torchvision.models, arch)().state_dict()  # untrained: no download


def timm_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(2)
    return timm.create_model("resnet18", pretrained=False).state_dict()


@pytest.mark.parametrize(("source", "arch"), [("torchvision", "resnet18"), ("timm", "resnet18"),
                                              ("torchvision", "resnet34"), ("torchvision", "resnet50")])
def test_imagenet_state_dict_loads_into_the_deeplab_encoder(tmp_path, caplog, source, arch):
    state = torchvision_state(arch) if source == "torchvision" else timm_state()
    path = saved(tmp_path, source, state)
    with caplog.at_level(logging.WARNING, logger="segal.models.pretrained"):
        model = MODELS.get("deeplabv3plus")(3, encoder=arch, weights=path)
        MODELS.get("deeplabv3plus")(3, encoder=arch, weights=path)  # rebuilt next cycle: said once
    encoder = model.net.encoder.state_dict()
    assert set(encoder) == set(state) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(encoder[k], state[k]) for k in encoder)
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert f"loaded {len(encoder)} tensors" in line and "left out 2 keys" in line and "fc.weight" in line
    assert line.startswith(path)


def test_wrapped_keys_and_timm_universal_encoders_are_mapped(tmp_path):
    state = torchvision_state()
    wrapped = saved(tmp_path, "ddp", {f"module.backbone.{k}": v for k, v in state.items()})
    model = MODELS.get("deeplabv3plus")(3, encoder="tu-resnet18", weights=wrapped)  # timm inside: model.conv1…
    encoder = model.net.encoder.state_dict()
    assert all(torch.equal(v, state[k.removeprefix("model.")]) for k, v in encoder.items())


def test_segal_checkpoint_of_the_whole_network_still_loads(tmp_path):
    torch.manual_seed(3)
    first = MODELS.get("deeplabv3plus")(3, encoder="resnet18")
    again = MODELS.get("deeplabv3plus")(3, encoder="resnet18", weights=saved(tmp_path, "task", first.state_dict()))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())


@pytest.mark.parametrize(("model", "encoder", "arch", "needle"), [
    ("deeplabv3plus", "resnet18", "resnet34", "larger architecture"),
    ("deeplabv3plus", "resnet34", "resnet18", "only 120 of the 216 tensors"),
    ("deeplabv3plus", "resnet50", "resnet18", "'layer1.0.conv1.weight' is [64, 64, 3, 3]"),
    ("drn_d_22", None, "resnet18", "these are ResNet weights"),
])
def test_weights_of_another_architecture_are_refused(tmp_path, model, encoder, arch, needle):
    path = saved(tmp_path, arch, torchvision_state(arch))
    with pytest.raises(UserError, match="fix:") as caught:
        MODELS.get(model)(3, encoder=encoder, weights=path)
    assert needle in str(caught.value) and str(caught.value).startswith(path)


def test_a_file_with_nothing_that_matches_is_refused(tmp_path):
    path = saved(tmp_path, "junk", {"head.weight": torch.zeros(2)})
    with pytest.raises(UserError, match="no tensor in these weights fits the 'resnet18' encoder"):
        MODELS.get("deeplabv3plus")(3, encoder="resnet18", weights=path)


@pytest.mark.parametrize(("weights", "needle"), [
    ("missing.pt", "weights file not found"),
    ("garbage.pt", "cannot read weights"),
    ("resnet34.pt", "larger architecture"),
])
def test_acquire_checks_the_weights_file_before_writing(tmp_path, capsys, weights, needle):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    saved(tmp_path, "resnet34", torchvision_state("resnet34"))
    data = tiny_recipe(tmp_path)
    data["model"]["weights"] = str(tmp_path / weights)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    import tests.tiny  # noqa: F401  (registers tiny-seg)

    assert main(["acquire", str(recipe), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(tmp_path / weights) in err, err
    assert not (tmp_path / "run").exists()


def test_a_relative_weights_path_is_read_from_the_recipe_folder(tmp_path, monkeypatch):
    from segal.config import load_recipe, parse_set

    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text("model:\n  weights: ../weights/resnet18.pt\n")
    monkeypatch.chdir(tmp_path / "recipes")
    assert load_recipe(recipe).model.weights == str(tmp_path / "weights" / "resnet18.pt")
    assert load_recipe(recipe, sets=parse_set(["model.weights=w.pt"])).model.weights == str(tmp_path / "recipes" / "w.pt")
    recipe.write_text("model:\n  weights: imagenet\n")
    assert load_recipe(recipe).model.weights == "imagenet"
