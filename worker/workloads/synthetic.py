"""Random images for cost-only runs: no ground truth, so accuracy is reported as null."""

from __future__ import annotations

import torch

from shared.errors import FarmError
from worker.workloads.data import ImageFormat, ImageSet


def synthetic_images(dataset_id: str, fmt: ImageFormat, *, seed: int = 0) -> ImageSet:
    try:
        n = int(dataset_id.split(":", 1)[1])
    except ValueError:
        n = 0
    if n <= 0:
        raise FarmError(f"synthetic dataset needs a positive count, e.g. synthetic:256, got {dataset_id!r}")
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, fmt.channels, fmt.size, fmt.size, generator=gen)
    return ImageSet(images, None, 0, dataset_id)
