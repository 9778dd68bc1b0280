"""What a job may name: datasets and models, checked before a job is queued and again on the worker.

A submitter can make a worker read only:
- the built-in workload (`digits`, `builtin:vit-digits`) and `synthetic:N` random images;
- files and folders under the worker's FARM_DATA_ROOTS (symlinks resolved first, so a link cannot lead out);
- hub model ids (`org/name`), resolved only through the Hugging Face hub cache (never a folder of that name in
  the worker's current directory) and loaded without remote code (worker/workloads/models.py hub_snapshot).
Anything else is refused with one line. CIFAR-100 archives (a pickle format) are read with a restricted
unpickler that admits only the format's types (see worker/workloads/safe_pickle.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.datasets import DATASETS, Argument
from shared.errors import FarmError

BUILTIN_MODEL = "builtin:vit-digits"
DATASET_GRAMMAR = ", ".join(d.grammar for d in DATASETS[:-1]) + f" or {DATASETS[-1].grammar}"
MAX_SYNTHETIC = 1_000_000
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")


# The dataset kinds and what follows their colon: nothing, an image count, or a path under FARM_DATA_ROOTS
# (declared in shared/datasets.py; the worker's loaders are resolved from the same descriptors).
DATASET_ARGUMENTS: dict[str, Argument] = {d.kind: d.argument for d in DATASETS}


@dataclass(frozen=True)
class DatasetRef:
    """A parsed dataset name: `kind` (a key of DATASET_ARGUMENTS), and its path or image count."""

    kind: str
    path: str | None = None
    count: int | None = None


def parse_dataset(name: str) -> DatasetRef:
    """The dataset grammar only (no file access); FarmError naming the grammar for a bad name."""
    kind, sep, arg = name.partition(":")
    argument = DATASET_ARGUMENTS.get(kind)
    if argument == "none" and not sep:
        return DatasetRef(kind)
    if argument == "count" and sep:
        try:
            count = int(arg)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_SYNTHETIC:
            raise FarmError(f"{kind} dataset needs a count from 1 to {MAX_SYNTHETIC:,}, e.g. {kind}:256, "
                            f"got {name!r}")
        return DatasetRef(kind, count=count)
    if argument == "path" and sep and arg.strip():
        return DatasetRef(kind, path=arg)
    raise FarmError(f"unknown dataset {name!r}; use {DATASET_GRAMMAR}")


def under_roots(path: str, roots: tuple[str, ...], *, what: str) -> Path:
    """`path` resolved (symlinks followed) inside one of `roots`; a relative path is tried against each root.

    FarmError when it would lead outside every root. The result may not exist.
    """
    if not roots:
        raise FarmError(f"{what} {path!r} names a file, but no FARM_DATA_ROOTS are configured")
    resolved_roots = [Path(r).expanduser().resolve() for r in roots]
    given = Path(path).expanduser()
    candidates = [given.resolve()] if given.is_absolute() else [(r / given).resolve() for r in resolved_roots]
    inside = [c for c in candidates if any(c.is_relative_to(r) for r in resolved_roots)]
    if not inside:
        raise FarmError(f"{what} {path!r} is outside FARM_DATA_ROOTS ({', '.join(map(str, resolved_roots))}); "
                        "put it under one of them")
    return next((c for c in inside if c.exists()), inside[0])


def _visible(path: Path, roots: tuple[str, ...]) -> bool:
    """Whether this machine has the root that holds `path` (so a missing `path` is really missing)."""
    return any(path.is_relative_to(Path(r).expanduser().resolve()) and Path(r).expanduser().is_dir() for r in roots)


def check_dataset(name: str, roots: tuple[str, ...]) -> str:
    """The dataset name as a job should carry it (cifar100 paths made absolute); FarmError when it cannot work.

    A file is checked for existence only where its root exists on this machine (the controller may not
    see the workers' files).
    """
    ref = parse_dataset(name)
    if ref.path is None:
        return name
    path = under_roots(ref.path, roots, what="dataset")
    if _visible(path, roots) and not path.exists():
        raise FarmError(f"dataset file or folder not found: {path}")
    return f"{ref.kind}:{path}"


def model_kind(model: str) -> Literal["builtin", "path", "hub"]:
    """builtin, an absolute (or ~) folder path, or a hub id; FarmError for anything else."""
    if model == BUILTIN_MODEL:
        return "builtin"
    if model.startswith(("/", "~")):
        return "path"
    if _HUB_ID.match(model) and ".." not in model:
        return "hub"
    raise FarmError(f"--model must be {BUILTIN_MODEL}, a hub id (org/name) or an absolute folder path under "
                    f"FARM_DATA_ROOTS, got {model!r}")


def check_model(model: str, roots: tuple[str, ...]) -> str:
    """The model name as a job should carry it (folders made absolute); FarmError when it cannot work."""
    if model_kind(model) != "path":
        return model
    path = under_roots(model, roots, what="model folder")
    if _visible(path, roots) and not path.is_dir():
        raise FarmError(f"model folder not found: {path}")
    return str(path)
