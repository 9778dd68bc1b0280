"""Random images for cost-only runs: no ground truth, so accuracy is reported as null."""

from __future__ import annotations

import torch

from shared.inputs import DatasetRef, parse_dataset
from worker.workloads.types import ImageFormat, ImageSet, Split


def synthetic_images(dataset_id: str, fmt: ImageFormat, *, seed: int = 0) -> ImageSet:
    n = parse_dataset(dataset_id).count or 0
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, fmt.channels, fmt.size, fmt.size, generator=gen)
    return ImageSet(images, None, 0, dataset_id)


def load(ref: DatasetRef, split: Split, fmt: ImageFormat, *, seed: int = 0, roots: tuple[str, ...] = ()) -> ImageSet:
    """The same random images for every split (nothing is trained on them)."""
    return synthetic_images(f"synthetic:{ref.count}", fmt, seed=seed)
