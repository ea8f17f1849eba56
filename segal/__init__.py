"""segal: active learning for semantic segmentation (and classification), VAAL first."""

__version__ = "0.1.0"
