"""The types every dataset loader returns, and the helpers they share (fixed-seed splits, normalisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from shared.errors import FarmError

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ImageSet:
    """Images (N, C, H, W) ready for the model, labels (N,) or None when there is no ground truth."""

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    dataset_id: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def head(self, n: int | None) -> ImageSet:
        if n is None or n >= len(self):
            return self
        labels = None if self.labels is None else self.labels[:n]
        return ImageSet(self.images[:n], labels, self.num_classes, self.dataset_id)


@dataclass(frozen=True)
class ImageFormat:
    """What the model expects: channels, square size in pixels, and per-channel normalisation."""

    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Set when the normalisation was assumed rather than read from the model (it lands in the rows' warnings).
    note: str | None = None


def split_indices(n: int, seed: int, fractions: tuple[float, float] = (0.6, 0.2)) -> dict[str, torch.Tensor]:
    """Fixed-seed train/val/test index split; test gets what train and val leave."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    return {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}


def to_format(images: torch.Tensor, fmt: ImageFormat) -> torch.Tensor:
    """Resize float images in [0, 1] (N, C, H, W) to the model's size and normalise them."""
    if images.shape[1] != fmt.channels:
        if images.shape[1] == 1:
            images = images.expand(-1, fmt.channels, -1, -1)
        elif fmt.channels == 1:
            images = images.mean(dim=1, keepdim=True)
        else:
            raise FarmError(f"cannot feed {images.shape[1]}-channel images to a {fmt.channels}-channel model")
    if images.shape[-1] != fmt.size or images.shape[-2] != fmt.size:
        images = torch.nn.functional.interpolate(images, size=(fmt.size, fmt.size), mode="bilinear", antialias=True)
    mean = torch.tensor(fmt.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(fmt.std, dtype=images.dtype).view(1, -1, 1, 1)
    return ((images - mean) / std).contiguous()
