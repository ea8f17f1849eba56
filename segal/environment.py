"""What computed a run: the machine, the numeric libraries' versions, and a fingerprint of their arithmetic.

A benchmark grid is run across sessions on machines that come and go, and is installed each time from
the package registries.  Seeded training is bit-identical only where the floating-point kernels are:
the same seed, code and recipe trained 1,600 steps on CamVid gave 41.97 mIoU in one session and 43.89
in the next (docs/results.md), each on a fresh machine with a fresh install.  So every start or resume of a
run logs an ``environment`` line to ``log.jsonl``: a run's records then say what produced them, and two
runs whose ``numeric_fingerprint`` differ are known not to share their arithmetic.

The fingerprint hashes the output and gradients of a small seeded convolution, batch norm and Adam
step on the CPU: the operations the task network is made of, in the library versions, the SIMD
path (``cpu_capability``) and the thread count of this process (the kernels split their reductions
by thread, so one machine gives one fingerprint per ``torch_threads``: compare runs at the same
count).  It costs a few milliseconds once the kernels are loaded (about 2 s on the first call).
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from typing import Any

import torch

# The distributions whose versions can change a seeded run's numbers (decoding, resizing, augmentation,
# the networks and their kernels).
PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "albumentations", "albucore",
            "segmentation-models-pytorch", "timm", "pillow", "scikit-image")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """Installed version of each of :data:`PACKAGES` (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def numeric_fingerprint() -> str:
    """12 hex digits that change when this process's CPU arithmetic for a conv net's training step does
    (at its current ``torch.get_num_threads()``)."""
    with torch.random.fork_rng(devices=[]):  # the run's own random streams are left where they were
        torch.manual_seed(1417)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                  torch.nn.Conv2d(16, 8, 3, stride=2, padding=1))
        x = torch.randn(4, 3, 24, 32)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        out = net(x)
        loss = torch.nn.functional.cross_entropy(out, out.detach().argmax(1).roll(1, dims=-1))
        loss.backward()
        opt.step()
        digest = hashlib.sha256(out.detach().numpy().tobytes())
        for p in net.parameters():
            digest.update(p.detach().numpy().tobytes())
    return digest.hexdigest()[:12]


def describe(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The ``environment`` record of a run's log: machine, Python, packages, CPU path, fingerprint."""
    dev = torch.device(device)
    info: dict[str, Any] = {
        "cpu": cpu_model(), "machine": platform.machine(), "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads(),
        "packages": package_versions(), "numeric_fingerprint": numeric_fingerprint(), "device": str(dev),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info
