"""Run under torchrun (2 CPU processes, gloo): sharded entropy scoring and a DDP loop on the tiny dataset.

Writes one JSON per rank with the selected indices, so the test can compare ranks and the
single-process selection.
"""

import json
import sys
from pathlib import Path

import torch

import tests.tiny  # noqa: F401
from segal import distributed as dist
from segal.models import MODELS
from segal.strategies import STRATEGIES
from segal.strategies.context import build_context
from tests.tiny import TinySeg


def select(out: Path) -> None:
    dist.init_from_env(torch.device("cpu"))
    pool = TinySeg(30, salt=0)
    torch.manual_seed(0)
    model = MODELS.get("deeplabv3plus")(3, encoder="resnet18")
    ctx = build_context(pool, list(range(6)), 5, image_size=[32, 32], num_classes=3, model=model, batch_size=4)
    chosen = STRATEGIES.get("entropy")().select(ctx).indices.tolist()
    (out / f"select_rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(chosen))
    # VAAL trains its VAE and discriminator with gradients averaged across ranks: ranks must agree.
    cls = STRATEGIES.get("vaal")
    vaal = cls(cls.Params(image_size=32, z_dim=8, width=8, batch_size=4, steps=4))
    ctx = build_context(pool, list(range(6)), 5, image_size=[32, 32], num_classes=3, model=None, batch_size=4)
    chosen = vaal.select(ctx).indices.tolist()
    (out / f"vaal_rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(chosen))


if __name__ == "__main__":
    select(Path(sys.argv[1]))
    if dist.is_distributed():
        torch.distributed.destroy_process_group()
