"""segal: active learning for semantic segmentation (and classification), VAAL first."""

from importlib.metadata import PackageNotFoundError, version

try:  # the installed distribution's version (what pip reports), recorded in every cycle's metrics.json
    __version__ = version("segal-vaal")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.1.0"
