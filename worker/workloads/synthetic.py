"""Random images for cost-only runs: no ground truth, so accuracy is reported as null."""

from __future__ import annotations

import torch

from shared.inputs import parse_dataset
from worker.workloads.data import ImageFormat, ImageSet


def synthetic_images(dataset_id: str, fmt: ImageFormat, *, seed: int = 0) -> ImageSet:
    n = parse_dataset(dataset_id).count or 0
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, fmt.channels, fmt.size, fmt.size, generator=gen)
    return ImageSet(images, None, 0, dataset_id)
