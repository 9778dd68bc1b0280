"""CIFAR-100 from the standard python archive (`cifar-100-python.tar.gz`) or its extracted folder.

The archive's files are Python pickles (the format the dataset is published in). They are read with a
restricted unpickler that admits only plain data and numpy arrays, and only from under FARM_DATA_ROOTS.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.errors import FarmError
from shared.inputs import DatasetRef, under_roots
from worker.workloads.safe_pickle import load_data_pickle
from worker.workloads.types import ImageFormat, ImageSet, Split, to_format

IMAGE_BYTES = 3 * 32 * 32


def _read_member(path: Path, name: str) -> Any:
    if path.is_dir():
        for candidate in (path / name, path / "cifar-100-python" / name):
            if candidate.is_file():
                with candidate.open("rb") as fh:
                    return load_data_pickle(fh, str(candidate))
        raise FarmError(f"{path} has no CIFAR-100 file {name!r}")
    try:
        if not tarfile.is_tarfile(path):
            raise FarmError(f"{path} is neither a folder nor a tar archive")
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.split("/")[-1] == name:
                    fh = tar.extractfile(member)
                    if fh is None:
                        break
                    return load_data_pickle(fh, f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise FarmError(f"cannot read CIFAR-100 archive {path}: {type(exc).__name__}: {exc}") from None
    raise FarmError(f"{path} has no CIFAR-100 file {name!r}")


def _arrays(raw: Any, source: str) -> tuple[np.ndarray, list[int]]:
    """The images (N, 3, 32, 32) uint8 and fine labels of one CIFAR-100 file; FarmError for the wrong shape."""
    if not isinstance(raw, dict) or b"data" not in raw or b"fine_labels" not in raw:
        raise FarmError(f"{source} is not a CIFAR-100 file: expected a dict with b'data' and b'fine_labels'")
    data, labels = raw[b"data"], raw[b"fine_labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise FarmError(f"{source}: b'data' must be a uint8 array of shape (N, {IMAGE_BYTES})")
    if not isinstance(labels, list) or len(labels) != data.shape[0] or not all(
        isinstance(v, int) and 0 <= v < 100 for v in labels
    ):
        raise FarmError(f"{source}: b'fine_labels' must be {data.shape[0]} integers in 0..99")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar100_split(
    location: str, split: Split, fmt: ImageFormat, *, seed: int = 0, dataset_id: str = "cifar100",
    roots: tuple[str, ...] | None = None,
) -> ImageSet:
    """`test` is the official test set; `train` and `val` are a fixed-seed 90/10 split of the train set.

    With `roots`, `location` must lie under one of them (symlinks resolved).
    """
    path = under_roots(location, roots, what="dataset") if roots is not None else Path(location).expanduser()
    if not path.exists():
        raise FarmError(f"CIFAR-100 archive or folder not found: {path}")
    member = "test" if split == "test" else "train"
    data, fine = _arrays(_read_member(path, member), f"{path} ({member})")
    labels = torch.tensor(fine, dtype=torch.long)
    images = torch.from_numpy(data.copy()).float() / 255.0
    if split != "test":
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_val = len(labels) // 10
        idx = perm[:n_val] if split == "val" else perm[n_val:]
        images, labels = images[idx], labels[idx]
    return ImageSet(to_format(images, fmt), labels, 100, dataset_id)


def load(ref: DatasetRef, split: Split, fmt: ImageFormat, *, seed: int = 0, roots: tuple[str, ...] = ()) -> ImageSet:
    return load_cifar100_split(ref.path or "", split, fmt, seed=seed, dataset_id=f"cifar100:{ref.path}", roots=roots)
