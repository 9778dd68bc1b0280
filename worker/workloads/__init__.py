"""Workloads: image datasets (types.py, one module per dataset, registry.py) and the models that classify them."""

from worker.workloads.registry import DATASETS, load_dataset
from worker.workloads.types import ImageFormat, ImageSet

__all__ = ["DATASETS", "ImageFormat", "ImageSet", "load_dataset"]
