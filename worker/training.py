"""A seeded training loop for fine-tuning and distillation, with per-epoch metrics and best-val selection."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from worker.workloads.types import ImageSet


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch: mean train loss, val top-1 (fraction), seconds spent."""

    epoch: int
    train_loss: float
    val_top1: float
    duration_s: float


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    seed: int
    warmup_fraction: float = 0.0


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), with the KL in log space."""
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * t * t * kl + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


@torch.inference_mode()
def top1(model: torch.nn.Module, data: ImageSet, batch_size: int = 256) -> float:
    """Top-1 accuracy as a fraction, computed on the model's device."""
    if data.labels is None:
        raise ValueError(f"{data.dataset_id} has no labels")
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(data), batch_size):
        logits = model(data.images[i : i + batch_size].to(device)).logits
        correct += int((logits.argmax(-1).cpu() == data.labels[i : i + batch_size]).sum())
    return correct / len(data)


def fit(
    model: torch.nn.Module,
    train: ImageSet,
    val: ImageSet,
    cfg: FitConfig,
    *,
    teacher: torch.nn.Module | None = None,
    alpha: float = 0.25,
    temperature: float = 4.0,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    desc: str = "train",
    device: str = "cpu",
) -> tuple[torch.nn.Module, list[EpochMetrics]]:
    """Train with AdamW and a cosine schedule stepped per batch over all steps; keep the best-val weights.

    With a teacher, the loss is `distillation_loss`; otherwise cross-entropy. Deterministic on CPU for a seed.
    Trains on `device` and returns the model there.
    """
    import time

    assert train.labels is not None
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_fraction * total)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    if teacher is not None:
        teacher.eval().to(device)
    best_state, best_val, history = copy.deepcopy(model.state_dict()), -1.0, []
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=None)
    try:
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(len(train), generator=gen)
            loss_sum = torch.zeros((), device=device)
            for i in range(0, len(order), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                x, y = train.images[idx].to(device), train.labels[idx].to(device)
                logits = model(x).logits
                if teacher is None:
                    loss = F.cross_entropy(logits, y)
                else:
                    with torch.no_grad():
                        t_logits = teacher(x).logits
                    loss = distillation_loss(logits, t_logits, y, alpha=alpha, temperature=temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach() * len(idx)
                bar.update(1)
            val_top1 = top1(model, val)
            metrics = EpochMetrics(epoch, float(loss_sum) / len(train), val_top1, time.perf_counter() - t0)
            history.append(metrics)
            bar.set_postfix(loss=f"{metrics.train_loss:.3f}", val_top1=f"{val_top1:.3f}")
            if on_epoch:
                on_epoch(metrics)
            if val_top1 > best_val:
                best_val, best_state = val_top1, copy.deepcopy(model.state_dict())
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return model, history
