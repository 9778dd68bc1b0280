"""Build a variant's fp32 model: load the base, prune, retrain or distill; cache it by recipe.

The stages' functions come from the registry in shared/stages.py. One recipe (`recipe_of`) names both the
artifact and the lock under which it is built, so that jobs of the same recipe anywhere build it once.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from shared.refs import resolve
from shared.specs import JobSpec
from worker.artifacts import ArtifactMismatch, ArtifactStore, ensure_writable, recipe_key
from worker.training import EpochMetrics
from worker.workloads.models import BaseModel, TrainLock, builtin_key, load_base_model
from worker.workloads.types import ImageFormat

log = logging.getLogger(__name__)
EpochCallback = Callable[[str, str, EpochMetrics], None]  # (artifact key, "base"/"retrained"/"distilled", metrics)
BuildLock = Callable[[str], AbstractContextManager[Any]]  # artifact key -> lock held while building it


@dataclass
class CompressedModel:
    """A variant's model before quantization, and how it was made."""

    model: nn.Module
    fmt: ImageFormat
    model_id: str
    artifact_key: str | None
    trained_now: bool = False
    history: list[EpochMetrics] = field(default_factory=list)


class ArtifactMissing(RuntimeError):
    """A benchmark stage found no artifact where the compress stage should have stored it."""


def example_inputs(fmt: ImageFormat, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, fmt.channels, fmt.size, fmt.size)


def recipe_of(spec: JobSpec, base: BaseModel) -> dict[str, Any] | None:
    """What identifies a compressed model: base, data (if trained), stages and seed. None for the base itself.

    Its key (`artifact_key`) names the stored artifact and the build lock alike.
    """
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


def artifact_key(spec: JobSpec, base: BaseModel) -> str | None:
    recipe = recipe_of(spec, base)
    return None if recipe is None else recipe_key(recipe)


def _fresh_architecture(base: BaseModel) -> nn.Module:
    from transformers import AutoModelForImageClassification

    config = copy.deepcopy(base.model.config)  # type: ignore[union-attr]
    return AutoModelForImageClassification.from_config(config).eval()


def build_compressed(
    spec: JobSpec,
    store: ArtifactStore,
    *,
    device: str = "cpu",
    on_epoch: EpochCallback | None = None,
    allow_train: bool = True,
    roots: tuple[str, ...] = (),
    build_lock: BuildLock | None = None,
    train_lock: TrainLock | None = None,
    note: Callable[[str], None] | None = None,
) -> CompressedModel:
    """The variant's fp32 model on the CPU, from the artifact cache when its recipe was built before.

    Training (if any) runs on `device`. With `allow_train=False` a missing artifact, or one that fails
    verification, is an error. Model folders and datasets must lie under `roots` (FARM_DATA_ROOTS).
    `build_lock(key)` is held from the cache check to the stored artifact (for the built-in base model and the
    variant alike), so that a recipe submitted twice at once is built once; `train_lock()` (the host lock) is
    held only while training, so that a worker waiting for a build lock holds no host lock. A stored artifact
    that fails verification is rebuilt once, and `note` says so (the job's log). `on_epoch` gets the built-in
    base model's epochs too (kind "base").
    """
    def base_epoch(m: EpochMetrics) -> None:
        if on_epoch:
            on_epoch(builtin_key(), "base", m)

    base = load_base_model(spec.model, store, roots=roots, build_lock=build_lock, train_lock=train_lock,
                           on_epoch=base_epoch, note=note)
    recipe = recipe_of(spec, base)
    if recipe is None:
        return CompressedModel(base.model, base.fmt, base.model_id, None)
    key = recipe_key(recipe)
    with (build_lock or (lambda _key: nullcontext()))(key):
        return _load_or_build(spec, store, base, recipe, key, device=device, on_epoch=on_epoch,
                              allow_train=allow_train, roots=roots, train_lock=train_lock, note=note)


def _load_or_build(spec: JobSpec, store: ArtifactStore, base: BaseModel, recipe: dict[str, Any], key: str, *,
                   device: str, on_epoch: EpochCallback | None, allow_train: bool,
                   roots: tuple[str, ...], train_lock: TrainLock | None = None,
                   note: Callable[[str], None] | None = None) -> CompressedModel:
    stages = {stage.slot: stage for stage, _text, _spec in spec.variant.stages()}
    prune_fn = resolve(stages["prune"].function())
    example = example_inputs(base.fmt)
    if store.exists("variants", key, "weights.pt"):
        try:
            state = store.load_torch("variants", key, "weights.pt")
        except ArtifactMismatch as exc:
            if not allow_train:
                raise ArtifactMissing(f"{exc}: refusing to measure it; `farm retry` its compress stage to rebuild "
                                      "it") from None
            (note or log.warning)(f"{exc}: rebuilding {spec.variant.name}")
        else:
            model = prune_fn(_fresh_architecture(base), spec.variant.prune, example)
            model.load_state_dict(state, strict=True)
            return CompressedModel(model.eval(), base.fmt, base.model_id, key)
    if not allow_train:
        raise ArtifactMissing(
            f"no artifact {store.url('variants', key)} for {spec.variant.name}: the compress stage stores it "
            "there, so every worker must share FARM_ARTIFACTS"
        )
    ensure_writable(store)
    train = spec.variant.train
    teacher = copy.deepcopy(base.model) if train and train.kind == "distilled" else None
    model = prune_fn(base.model, spec.variant.prune, example)
    history: list[EpochMetrics] = []
    if train is not None:
        def report(kind: str, metrics: EpochMetrics) -> None:
            if on_epoch:
                on_epoch(key, kind, metrics)

        finetune = resolve(stages["train"].function())
        with (train_lock or nullcontext)():
            model, history = finetune(model, spec, base.fmt, teacher=teacher, on_epoch=report, device=device,
                                      roots=roots)
        model.to("cpu")
    store.save_torch("variants", key, "weights.pt", model.state_dict())
    store.write_json("variants", key, "recipe.json", recipe)
    return CompressedModel(model.eval(), base.fmt, base.model_id, key, trained_now=True, history=history)
