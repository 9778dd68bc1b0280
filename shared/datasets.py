"""The dataset kinds, one descriptor each: what follows the colon in a dataset name, the grammar's words for
it, and the worker function that loads it. shared/inputs.py parses and checks names against this list; the
worker's registry (worker/workloads/registry.py) is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Argument = Literal["none", "count", "path"]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset kind: `argument` is nothing, an image count, or a path under FARM_DATA_ROOTS; `loader` is
    `load(ref, split, fmt, *, seed, roots) -> ImageSet`."""

    kind: str
    argument: Argument
    grammar: str
    loader: str
    summary: str


DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo("digits", "none", "digits", "worker.workloads.digits:load",
                "scikit-learn's 8x8 digits, the built-in workload (no download)"),
    DatasetInfo("synthetic", "count", "synthetic:N (N from 1 to 1,000,000)", "worker.workloads.synthetic:load",
                "N random images with random labels: speed and energy only, accuracy means nothing"),
    DatasetInfo("cifar100", "path", "cifar100:PATH (a path under FARM_DATA_ROOTS)", "worker.workloads.cifar100:load",
                "the CIFAR-100 python archive or its folder, read with a restricted unpickler"),
)
