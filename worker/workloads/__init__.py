"""Workloads: image datasets and the models that classify them."""

from worker.workloads.data import ImageSet, load_dataset

__all__ = ["ImageSet", "load_dataset"]
