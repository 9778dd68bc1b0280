"""The `retrained` and `distilled` stages: fine-tune a pruned model on the job's dataset."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shared.specs import JobSpec
from worker.training import EpochMetrics, FitConfig, fit
from worker.workloads.registry import load_dataset
from worker.workloads.types import ImageFormat


def finetune(
    model: nn.Module,
    spec: JobSpec,
    fmt: ImageFormat,
    *,
    teacher: nn.Module | None,
    on_epoch: Callable[[str, EpochMetrics], None] | None = None,
    device: str = "cpu",
    roots: tuple[str, ...] = (),
) -> tuple[nn.Module, list[EpochMetrics]]:
    """Cross-entropy (retrained) or distillation from `teacher` (distilled), keeping the best-val epoch."""
    train_spec = spec.variant.train
    assert train_spec is not None
    train = load_dataset(spec.dataset, "train", fmt, seed=spec.seed, roots=roots)
    val = load_dataset(spec.dataset, "val", fmt, seed=spec.seed, roots=roots)
    cfg = FitConfig(
        epochs=train_spec.epochs,
        lr=train_spec.lr,
        weight_decay=train_spec.weight_decay,
        batch_size=train_spec.batch_size,
        seed=train_spec.seed,
    )

    def report(m: EpochMetrics) -> None:
        if on_epoch:
            on_epoch(train_spec.kind, m)

    return fit(
        model,
        train,
        val,
        cfg,
        teacher=teacher if train_spec.kind == "distilled" else None,
        alpha=train_spec.alpha,
        temperature=train_spec.temperature,
        on_epoch=report,
        desc=train_spec.kind,
        device=device,
    )
