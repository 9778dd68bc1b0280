"""Build a variant's fp32 model: load the base, prune, retrain or distill; cache it by recipe."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from shared.specs import JobSpec, PruneSpec
from worker.artifacts import ArtifactStore, ensure_writable, recipe_key
from worker.compression.prune import prune_model
from worker.training import EpochMetrics
from worker.workloads.data import ImageFormat
from worker.workloads.models import BaseModel, load_base_model


@dataclass
class CompressedModel:
    """A variant's model before quantization, and how it was made."""

    model: nn.Module
    fmt: ImageFormat
    model_id: str
    artifact_key: str | None
    trained_now: bool = False
    history: list[EpochMetrics] = field(default_factory=list)


def example_inputs(fmt: ImageFormat, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, fmt.channels, fmt.size, fmt.size)


def variant_recipe(spec: JobSpec, base: BaseModel) -> dict[str, Any] | None:
    """What identifies a compressed model: base, data (if trained), stages and seed. None for the base itself."""
    v = spec.variant
    if v.prune is None:
        return None
    return {
        "base": base.recipe,
        "prune": asdict(v.prune),
        "train": asdict(v.train) if v.train else None,
        "dataset": spec.dataset if v.train else None,
        "seed": spec.seed,
    }


def _fresh_architecture(base: BaseModel) -> nn.Module:
    from transformers import AutoModelForImageClassification

    config = copy.deepcopy(base.model.config)  # type: ignore[union-attr]
    return AutoModelForImageClassification.from_config(config).eval()


class ArtifactMissing(RuntimeError):
    """A benchmark stage found no artifact where the compress stage should have stored it."""


EpochCallback = Callable[[str, str, EpochMetrics], None]  # (artifact key, "retrained"/"distilled", metrics)


def build_compressed(
    spec: JobSpec,
    store: ArtifactStore,
    *,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    allow_train: bool = True,
    roots: tuple[str, ...] = (),
) -> CompressedModel:
    """The variant's fp32 model on the CPU, from the artifact cache when its recipe was built before.

    Training (if any) runs on `device`. With `allow_train=False` a missing artifact is an error. Model
    folders and datasets must lie under `roots` (FARM_DATA_ROOTS).
    """
    base = load_base_model(spec.model, store, roots=roots)
    recipe = variant_recipe(spec, base)
    if recipe is None:
        return CompressedModel(base.model, base.fmt, base.model_id, None)
    prune: PruneSpec = spec.variant.prune  # type: ignore[assignment]
    key = recipe_key(recipe)
    example = example_inputs(base.fmt)
    if store.exists("variants", key, "weights.pt"):
        model = prune_model(_fresh_architecture(base), prune, example)
        model.load_state_dict(store.load_torch("variants", key, "weights.pt"), strict=True)
        return CompressedModel(model.eval(), base.fmt, base.model_id, key)

    if not allow_train:
        raise ArtifactMissing(
            f"no artifact {store.url('variants', key)} for {spec.variant.name}: the compress stage stores it "
            "there, so every worker must share FARM_ARTIFACTS"
        )
    ensure_writable(store)
    teacher = copy.deepcopy(base.model) if spec.variant.train and spec.variant.train.kind == "distilled" else None
    model = prune_model(base.model, prune, example)
    history: list[EpochMetrics] = []
    if spec.variant.train is not None:
        from worker.compression.finetune import finetune

        def report(kind: str, metrics: EpochMetrics) -> None:
            if on_epoch:
                on_epoch(key, kind, metrics)

        model, history = finetune(model, spec, base.fmt, teacher=teacher, on_epoch=report, device=device,
                                  roots=roots)
        model.to("cpu")
    store.save_torch("variants", key, "weights.pt", model.state_dict())
    store.write_json("variants", key, "recipe.json", recipe)
    return CompressedModel(model.eval(), base.fmt, base.model_id, key, trained_now=True, history=history)
