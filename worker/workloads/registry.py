"""The registry of datasets: one loader per dataset kind declared in shared/datasets.py, resolved from it.

A loader takes the parsed name, the split, the model's image format, a split seed and the data roots, and
returns an ImageSet. To add a dataset, write a module with a `load` like these and add one `DatasetInfo` to
shared/datasets.py (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.datasets import DATASETS as DATASET_INFOS
from shared.inputs import DatasetRef, parse_dataset
from shared.refs import resolve
from worker.workloads.types import ImageFormat, ImageSet, Split

Loader = Callable[..., ImageSet]  # (ref, split, fmt, *, seed, roots) -> ImageSet

DATASETS: dict[str, Loader] = {d.kind: resolve(d.loader) for d in DATASET_INFOS}


def load_dataset(dataset_id: str, split: Split, fmt: ImageFormat, *, seed: int = 0,
                 roots: tuple[str, ...] = ()) -> ImageSet:
    """Load `digits`, `cifar100:PATH` (PATH under one of `roots`) or `synthetic:N` for a model that expects `fmt`."""
    ref: DatasetRef = parse_dataset(dataset_id)
    return DATASETS[ref.kind](ref, split, fmt, seed=seed, roots=roots)
