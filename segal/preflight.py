"""The task-network checks a fresh run makes before it writes anything.

A bad encoder name, bad ``model.options`` or an image size the network cannot take used to fail at
the first training step, after ``state.json`` existed; as ``model.encoder`` and ``data.image_size``
are identity keys, the corrected recipe was then refused as "a different experiment".  Here the
network is built on PyTorch's ``meta`` device (shapes only: no memory, no arithmetic, well under a
second) and run once on an empty batch of the size it will see.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from segal.config import Recipe
from segal.errors import UserError
from segal.models import MODELS


def valid_sizes(size: Sequence[int], multiple: int) -> list[list[int]]:
    """The nearest [H, W] below and above ``size`` whose sides are multiples of ``multiple``."""
    down = [max(multiple, s // multiple * multiple) for s in size]
    up = [-(-s // multiple) * multiple for s in size]
    return [down] if down == up else [down, up]


def input_multiple(model: torch.nn.Module) -> int | None:
    """What the sides of an input must be multiples of (an smp encoder's output stride), if anything."""
    multiple = getattr(model, "input_multiple", None)
    if multiple is None:
        encoder = getattr(getattr(model, "net", None), "encoder", None)
        multiple = getattr(encoder, "output_stride", None)
    return int(multiple) if multiple else None


def check_weights_file(builder, num_classes: int, recipe: Recipe) -> None:
    """A local ``model.weights`` file exists, reads as a state dict and fits the network: the builder
    loads it into a ``meta`` copy (names and shapes are compared, nothing is copied).  Its errors name
    the weights file, which is what the user fixes."""
    m = recipe.model
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter", category=UserWarning)
        builder(num_classes, encoder=m.encoder, weights=m.weights, **m.options)


def check_model(recipe: Recipe, num_classes: int, image_size: Sequence[int] | None, source: str) -> None:
    """Build the recipe's network on the meta device and pass it one empty batch of ``image_size``
    (the recipe's, or the images' own when it has none); every failure is a :class:`UserError`."""
    m = recipe.model
    builder = MODELS.get(m.name)
    what = f"model {m.name!r}" + (f" (encoder {m.encoder!r})" if recipe.task == "segmentation" else "")
    try:
        with torch.device("meta"):
            # weights=None here: a local file is checked by check_weights_file below; "imagenet" downloads
            model = builder(num_classes, encoder=m.encoder, weights=None, **m.options)
    except TypeError as exc:
        raise UserError(f"bad model.options for {what}: {exc}", path=source,
                        fix="remove the options the model does not take") from None
    except UserError as exc:  # the builder's own message (unknown encoder, option), named after the recipe
        raise UserError(str(exc), path=source) from None
    if m.weights not in (None, "imagenet"):
        check_weights_file(builder, num_classes, recipe)
    if image_size is None or recipe.task != "segmentation":
        return
    size = [int(s) for s in image_size]
    multiple = input_multiple(model)
    key = "data.image_size" if recipe.data.image_size is not None else "the images' own size"
    if multiple and any(s % multiple for s in size):
        options = " or ".join(str(v) for v in valid_sizes(size, multiple))
        raise UserError(f"{key} {size} does not fit {what}: height and width must be multiples of {multiple}",
                        path=source, fix=f"set data.image_size to {options}")
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.empty(1, 3, *size, device="meta"))
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"{what} cannot take {key} {size} ({str(exc).splitlines()[0][:120]})", path=source,
                        fix="choose another data.image_size (multiples of 32 fit every model)") from None
    if tuple(out.shape[-2:]) != tuple(size):
        raise UserError(f"{what} turns {key} {size} into {list(out.shape[-2:])}-pixel masks", path=source,
                        fix="choose another data.image_size (multiples of 32 fit every model)")

