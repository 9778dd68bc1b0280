"""scikit-learn's bundled digits: 1,797 real 8x8 grey images of 10 classes, no download."""

from __future__ import annotations

import torch

from shared.inputs import DatasetRef
from worker.workloads.types import ImageFormat, ImageSet, Split, split_indices, to_format

# Mean and std of all digits pixels scaled to [0, 1]; the built-in model is trained with these.
DIGITS_FORMAT = ImageFormat(channels=1, size=8, mean=(0.3053,), std=(0.3760,))


def load_digits_split(split: Split, fmt: ImageFormat = DIGITS_FORMAT, *, seed: int = 0) -> ImageSet:
    """The 60/20/20 train/val/test split of digits with a fixed seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    idx = split_indices(len(labels), seed)[split]
    return ImageSet(to_format(images[idx], fmt), labels[idx], 10, "digits")


def load(ref: DatasetRef, split: Split, fmt: ImageFormat, *, seed: int = 0, roots: tuple[str, ...] = ()) -> ImageSet:
    return load_digits_split(split, fmt, seed=seed)
