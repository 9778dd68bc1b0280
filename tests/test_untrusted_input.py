"""Untrusted files and paths: crafted CIFAR-100 pickles never run code; nothing outside FARM_DATA_ROOTS is read."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from shared.errors import FarmError
from shared.inputs import check_dataset, check_model, model_kind, parse_dataset, under_roots
from tests.test_workloads import FMT, write_cifar100
from worker.workloads.registry import load_dataset


class _RunsCode:
    """Unpickling this with the plain unpickler calls os.system: the attack the issue reproduced."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _crafted_cifar(root: Path, marker: Path) -> tuple[Path, Path]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    payload = pickle.dumps({b"data": _RunsCode(marker), b"fine_labels": [0]})
    (folder / "test").write_bytes(payload)
    archive = root / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/test")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return archive, folder


def test_crafted_cifar_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    archive, folder = _crafted_cifar(tmp_path / "data", marker)
    for location in (archive, folder):
        with pytest.raises(FarmError, match=r"refusing to unpickle (posix|os)\.system"):
            load_dataset(f"cifar100:{location}", "test", FMT, roots=(str(tmp_path),))
    assert not marker.exists()
    pickle.loads((folder / "test").read_bytes())  # the plain unpickler would have run it: the test is real
    assert marker.exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(pickle.dumps([1, 2, 3]), "not a CIFAR-100 file"),
     (pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"fine_labels": [0, 1]}), "shape"),
     (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}), "0..99"),
     (b"this is not a pickle at all", "not a readable CIFAR-100 pickle")],
)
def test_cifar_files_of_the_wrong_shape_are_one_farm_error(tmp_path: Path, content: bytes, needle: str) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "test").write_bytes(content)
    with pytest.raises(FarmError, match=needle):
        load_dataset(f"cifar100:{tmp_path}", "test", FMT, roots=(str(tmp_path),))


def test_truncated_archive_is_a_farm_error(tmp_path: Path) -> None:
    archive, _ = write_cifar100(tmp_path / "data")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(FarmError, match="cannot read CIFAR-100 archive"):
        load_dataset(f"cifar100:{cut}", "test", FMT, roots=(str(tmp_path),))


def test_paths_outside_the_roots_are_refused_even_through_a_symlink(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    archive, _ = write_cifar100(outside)
    root.mkdir()
    (root / "link.tar.gz").symlink_to(archive)
    roots = (str(root),)
    for name in (str(archive), str(root / "link.tar.gz"), str(root / ".." / "outside" / archive.name), "../x"):
        with pytest.raises(FarmError, match="outside FARM_DATA_ROOTS"):
            load_dataset(f"cifar100:{name}", "test", FMT, roots=roots)
    with pytest.raises(FarmError, match="no FARM_DATA_ROOTS"):
        load_dataset(f"cifar100:{archive}", "test", FMT, roots=())
    inside, _ = write_cifar100(root / "c")
    assert len(load_dataset("cifar100:c/cifar-100-python.tar.gz", "test", FMT, roots=roots)) == 60  # relative
    assert under_roots(str(inside), roots, what="dataset") == inside


def test_dataset_and_model_grammar() -> None:
    assert parse_dataset("synthetic:5").count == 5
    for bad in ("synthetic:0", "synthetic:-5", "synthetic:x", "synthetic:2000000", "imagenet", "cifar100:"):
        with pytest.raises(FarmError):
            parse_dataset(bad)
    assert model_kind("builtin:vit-digits") == "builtin"
    assert model_kind("google/vit-base-patch16-224") == "hub"
    assert model_kind("/models/vit") == "path"
    for bad in ("../etc", "a/b/c", "x y", "s3://bucket/model"):
        with pytest.raises(FarmError, match="--model must be"):
            model_kind(bad)


def test_submit_checks_see_missing_files_only_where_the_root_exists(tmp_path: Path) -> None:
    roots = (str(tmp_path), "/nonexistent-farm-root")
    with pytest.raises(FarmError, match="not found"):
        check_dataset(f"cifar100:{tmp_path / 'nope.tar.gz'}", roots)
    unseen = "cifar100:/nonexistent-farm-root/c.tar.gz"  # a worker's root this machine lacks: taken as given
    assert check_dataset(unseen, roots) == unseen
    with pytest.raises(FarmError, match="model folder not found"):
        check_model(str(tmp_path / "no-model"), roots)
