"""CIFAR-100 from archives in the real format, local model folders, and synthetic data."""

from __future__ import annotations

import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.errors import FarmError
from tests.conftest import run_farm
from worker.workloads.registry import load_dataset
from worker.workloads.types import ImageFormat


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 60, seed: int = 0) -> tuple[Path, Path]:
    """A small CIFAR-100 in the real python format: cifar-100-python/{train,test,meta} pickles, and its .tar.gz.

    Classes are made learnable: each image is a noisy version of its class's colour pattern.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(100, 3072))
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, size=n)
        noise = rng.integers(-20, 21, size=(n, 3072))
        data = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        with (folder / name).open("wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(),
                         b"filenames": [f"{i}.png".encode() for i in range(n)]}, fh)
    with (folder / "meta").open("wb") as fh:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, fh)
    archive = root / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    return archive, folder


def write_tiny_vit(folder: Path, image_size: int = 16, with_weights: bool = True) -> Path:
    """A small ViT-for-CIFAR-100 model folder, as `save_pretrained` writes it, with an image processor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(image_size=image_size, patch_size=4, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=100)
    if with_weights:
        torch.manual_seed(0)
        ViTForImageClassification(config).save_pretrained(folder)
        ViTImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.4, 0.3],
                          image_std=[0.2, 0.2, 0.2]).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    return folder


FMT = ImageFormat(channels=3, size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_cifar100_archive_and_folder_load_the_same_splits(tmp_path: Path) -> None:
    archive, folder = write_cifar100(tmp_path)
    for split, n in (("train", 180), ("val", 20), ("test", 60)):
        a = load_dataset(f"cifar100:{archive}", split, FMT, roots=(str(tmp_path),))
        b = load_dataset(f"cifar100:{folder.parent}", split, FMT, roots=(str(tmp_path),))
        assert len(a) == n and a.num_classes == 100
        assert a.images.shape == (n, 3, 16, 16)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    roots = (str(tmp_path),)
    train = load_dataset(f"cifar100:{archive}", "train", FMT, roots=roots)
    val = load_dataset(f"cifar100:{archive}", "val", FMT, roots=roots)
    assert len(set(train.images[:, 0, 0, 0].tolist()) & set(val.images[:, 0, 0, 0].tolist())) < 20


def test_cifar100_is_normalised_as_the_model_says(tmp_path: Path) -> None:
    archive, _ = write_cifar100(tmp_path)
    raw = load_dataset(f"cifar100:{archive}", "test", ImageFormat(3, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                       roots=(str(tmp_path),))
    assert 0.0 <= float(raw.images.min()) and float(raw.images.max()) <= 1.0
    fmt = ImageFormat(3, 32, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    norm = load_dataset(f"cifar100:{archive}", "test", fmt, roots=(str(tmp_path),))
    expected = (raw.images - torch.tensor(fmt.mean).view(1, 3, 1, 1)) / 0.2
    assert torch.allclose(norm.images, expected, atol=1e-5)


def test_missing_or_bad_cifar_path_is_a_farm_error(tmp_path: Path) -> None:
    with pytest.raises(FarmError, match="not found"):
        load_dataset(f"cifar100:{tmp_path / 'nope.tar.gz'}", "test", FMT, roots=(str(tmp_path),))
    (tmp_path / "junk").write_text("x")
    with pytest.raises(FarmError, match="neither a folder nor a tar"):
        load_dataset(f"cifar100:{tmp_path / 'junk'}", "test", FMT, roots=(str(tmp_path),))
    with pytest.raises(FarmError, match="unknown dataset"):
        load_dataset("imagenet", "test", FMT)


def test_synthetic_images_have_no_labels() -> None:
    data = load_dataset("synthetic:12", "test", FMT)
    assert len(data) == 12 and data.labels is None
    with pytest.raises(FarmError):
        load_dataset("synthetic:zero", "test", FMT)


def test_local_model_folder_with_cifar_archive_runs_the_seed_recipe(tmp_path: Path, farm_env: dict[str, str]) -> None:
    archive, _ = write_cifar100(tmp_path / "data")
    model_dir = write_tiny_vit(tmp_path / "tiny-vit")
    proc = run_farm(["run", "--variant", "pruned-retrained", "--model", str(model_dir),
                     "--dataset", f"cifar100:{archive}", "--epochs", "1", "--repeats", "1", "--format", "json"],
                    farm_env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["variant"] for r in rows] == ["baseline", "pruned", "pruned-retrained"]
    assert all(r["model_id"] == str(model_dir) and r["samples"] == 60 for r in rows)
    assert rows[1]["params"] < rows[0]["params"] and rows[2]["params"] == rows[1]["params"]
    assert all(0.0 <= r["top1"] <= r["top5"] <= 1.0 for r in rows)


def test_synthetic_dataset_reports_null_accuracy_end_to_end(tmp_path: Path, farm_env: dict[str, str]) -> None:
    model_dir = write_tiny_vit(tmp_path / "tiny-vit")
    proc = run_farm(["run", "--variant", "quant-int8dyn", "--model", str(model_dir), "--dataset", "synthetic:24",
                     "--repeats", "1", "--only", "--format", "json"], farm_env)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["top1"] is None and row["top5"] is None and row["samples"] == 24


def test_config_only_folder_is_enough_for_inspect(tmp_path: Path, farm_env: dict[str, str]) -> None:
    model_dir = write_tiny_vit(tmp_path / "cfg", with_weights=False)
    proc = run_farm(["inspect", "--variant", "prune-r0.25", "--model", str(model_dir), "--json"], farm_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["params"] < out["base_params"] and out["image_size"] == 16


def test_a_model_without_a_processor_is_measured_with_a_note_and_a_broken_one_is_refused(
    tmp_path: Path, farm_env: dict[str, str]
) -> None:
    """Before: any OSError fell back to mean/std 0.5 silently, a silently wrong accuracy."""
    from transformers import ViTConfig, ViTForImageClassification

    bare = tmp_path / "bare-vit"
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=64, num_labels=100)
    ViTForImageClassification(config).save_pretrained(bare)
    proc = run_farm(["run", "--variant", "baseline", "--model", str(bare), "--dataset", "synthetic:8", "--repeats",
                     "1", "--format", "json"], farm_env)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert any("normalisation assumed" in w for w in row["energy_warnings"]), row["energy_warnings"]

    broken = write_tiny_vit(tmp_path / "broken-vit")
    (broken / "preprocessor_config.json").write_text("{ not json")
    proc = run_farm(["run", "--variant", "baseline", "--model", str(broken), "--dataset", "synthetic:8",
                     "--repeats", "1"], farm_env)
    assert proc.returncode == 2 and "cannot read the image processor" in proc.stderr, proc.stderr

    good = write_tiny_vit(tmp_path / "good-vit")
    proc = run_farm(["run", "--variant", "baseline", "--model", str(good), "--dataset", "synthetic:8", "--repeats",
                     "1", "--format", "json"], farm_env)
    (row,) = json.loads(proc.stdout)
    assert not any("normalisation" in w for w in row["energy_warnings"])
