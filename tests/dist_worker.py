"""Run under torchrun (2 CPU processes, gloo): sharded entropy scoring and a DDP loop on the tiny dataset.

Writes one JSON per rank with the selected indices, so the test can compare ranks and the
single-process selection.
"""

import json
import sys
import time
from pathlib import Path

import torch

import tests.tiny  # noqa: F401
from segal import distributed as dist
from segal.device import Compute
from segal.models import MODELS
from segal.strategies import STRATEGIES
from segal.strategies.context import build_context
from tests.test_strategies_baselines import make_ctx, strategy
from tests.tiny import TinySeg

C32 = Compute(image_size=[32, 32], batch_size=4)


def select(out: Path) -> None:
    dist.init_from_env(torch.device("cpu"))
    pool = TinySeg(30, salt=0)
    torch.manual_seed(0)
    model = MODELS.get("deeplabv3plus")(3, encoder="resnet18")
    ctx = build_context(pool, list(range(6)), 5, num_classes=3, model=model, compute=C32)
    chosen = STRATEGIES.get("entropy")().select(ctx).indices.tolist()
    (out / f"select_rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(chosen))
    # VAAL trains its VAE and discriminator with gradients averaged across ranks: ranks must agree.
    cls = STRATEGIES.get("vaal")
    vaal = cls(cls.Params(image_size=32, z_dim=8, width=8, batch_size=4, steps=4))
    ctx = build_context(pool, list(range(6)), 5, num_classes=3, model=None, compute=C32)
    chosen = vaal.select(ctx).indices.tolist()
    (out / f"vaal_rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(chosen))
    # Committee members, with rank 1 late to each member's checkpoint check (as a loaded core makes it):
    # it used to find the file rank 0 had just saved, skip the barrier, and leave rank 0 waiting forever.
    ctx, _ = make_ctx("classification", out / f"committee{dist.world()}", budget=5)
    build = ctx.build_model

    def late_build():
        time.sleep(1.0 * dist.rank())
        return build()

    ctx.build_model = late_build
    chosen = strategy("qbc").select(ctx).indices.tolist()
    (out / f"qbc_rank{dist.rank()}_of{dist.world()}.json").write_text(json.dumps(chosen))


def mismatch() -> None:
    """Rank 0 waits in a barrier, rank 1 in a gather: neither can finish, so the group's timeout must end it."""
    dist.init_from_env(torch.device("cpu"))
    if dist.rank() == 0:
        dist.barrier()
    else:
        dist.all_gather_object("never matched")


if __name__ == "__main__":
    if sys.argv[1] == "--mismatch":
        mismatch()
    else:
        select(Path(sys.argv[1]))
    if dist.is_distributed():
        torch.distributed.destroy_process_group()
