"""CIFAR-100 from the standard python archive (`cifar-100-python.tar.gz`) or its extracted folder.

The archive's files are Python pickles: that is the format the dataset is published in, so only load
archives you trust.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from shared.errors import FarmError
from worker.workloads.data import ImageFormat, ImageSet, Split


def _read_member(path: Path, name: str) -> dict[bytes, object]:
    if path.is_dir():
        for candidate in (path / name, path / "cifar-100-python" / name):
            if candidate.is_file():
                with candidate.open("rb") as fh:
                    return pickle.load(fh, encoding="bytes")
        raise FarmError(f"{path} has no CIFAR-100 file {name!r}")
    if not tarfile.is_tarfile(path):
        raise FarmError(f"{path} is neither a folder nor a tar archive")
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.split("/")[-1] == name:
                fh = tar.extractfile(member)
                assert fh is not None
                return pickle.load(fh, encoding="bytes")
    raise FarmError(f"{path} has no CIFAR-100 file {name!r}")


def load_cifar100_split(
    location: str, split: Split, fmt: ImageFormat, *, seed: int = 0, dataset_id: str = "cifar100"
) -> ImageSet:
    """`test` is the official test set; `train` and `val` are a fixed-seed 90/10 split of the train set."""
    path = Path(location).expanduser()
    if not path.exists():
        raise FarmError(f"CIFAR-100 archive or folder not found: {path}")
    raw = _read_member(path, "test" if split == "test" else "train")
    data = np.asarray(raw[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = torch.tensor(raw[b"fine_labels"], dtype=torch.long)  # type: ignore[arg-type]
    images = torch.from_numpy(data.copy()).float() / 255.0
    if split != "test":
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_val = len(labels) // 10
        idx = perm[:n_val] if split == "val" else perm[n_val:]
        images, labels = images[idx], labels[idx]
    from worker.workloads.data import to_format

    return ImageSet(to_format(images, fmt), labels, 100, dataset_id)
