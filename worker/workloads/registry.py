"""The registry of datasets: one loader per dataset kind of the grammar in shared/inputs.py.

A loader takes the parsed name, the split, the model's image format, a split seed and the data roots, and
returns an ImageSet. To add a dataset, write a module with a `load` like these and add one line to DATASETS
(and its name to `DATASET_ARGUMENTS` in shared/inputs.py, which the controller validates with).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.inputs import DatasetRef, parse_dataset
from worker.workloads.cifar100 import load as load_cifar100
from worker.workloads.digits import load as load_digits
from worker.workloads.synthetic import load as load_synthetic
from worker.workloads.types import ImageFormat, ImageSet, Split

Loader = Callable[..., ImageSet]  # (ref, split, fmt, *, seed, roots) -> ImageSet

DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "cifar100": load_cifar100,
}


def load_dataset(dataset_id: str, split: Split, fmt: ImageFormat, *, seed: int = 0,
                 roots: tuple[str, ...] = ()) -> ImageSet:
    """Load `digits`, `cifar100:PATH` (PATH under one of `roots`) or `synthetic:N` for a model that expects `fmt`."""
    ref: DatasetRef = parse_dataset(dataset_id)
    return DATASETS[ref.kind](ref, split, fmt, seed=seed, roots=roots)
