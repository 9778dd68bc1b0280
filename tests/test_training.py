"""Training stages: the distillation loss, determinism, best-val selection, and the seed's trends."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from shared.specs import JobSpec, PruneSpec, parse_variant
from worker.artifacts import ArtifactStore
from worker.compression.prune import prune_model
from worker.training import FitConfig, distillation_loss, fit, top1
from worker.variants import build_compressed
from worker.workloads.digits import load_digits_split


def test_distillation_loss_matches_the_seed_formula_on_moderate_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    y = torch.randint(0, 10, (8,), generator=gen)
    T, alpha = 4.0, 0.25
    p_t = F.softmax(t / T, dim=-1)
    seed_kl = (p_t * (p_t.log() - F.log_softmax(s / T, dim=-1))).sum(-1).mean()
    expected = alpha * T * T * seed_kl + (1 - alpha) * F.cross_entropy(s, y)
    assert distillation_loss(s, t, y, alpha=alpha, temperature=T) == pytest.approx(float(expected), rel=1e-5)


def test_distillation_loss_stays_finite_where_softmax_then_log_does_not() -> None:
    s = torch.tensor([[0.0, 0.0, 0.0]])
    t = torch.tensor([[2000.0, 0.0, -2000.0]])  # softmax underflows to exact zeros
    y = torch.tensor([0])
    naive = F.softmax(t, dim=-1) * F.softmax(t, dim=-1).log()
    assert torch.isnan(naive).any()
    loss = distillation_loss(s, t, y, alpha=0.25, temperature=1.0)
    assert torch.isfinite(loss)


def test_fit_is_reproducible_on_cpu_and_keeps_the_best_val_epoch(builtin_model) -> None:  # noqa: ANN001
    train, val = load_digits_split("train"), load_digits_split("val")
    cfg = FitConfig(epochs=3, lr=1e-3, weight_decay=0.01, batch_size=64, seed=7)
    example = torch.randn(1, 1, 8, 8)
    runs = []
    for _ in range(2):
        model = prune_model(copy.deepcopy(builtin_model.model), PruneSpec("all", 0.10), example)
        runs.append(fit(model, train, val, cfg))
    (m1, h1), (m2, h2) = runs
    assert [h.train_loss for h in h1] == [h.train_loss for h in h2]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    assert top1(m1, val) == pytest.approx(max(h.val_top1 for h in h1))


def test_builtin_pipeline_shows_the_seed_trends(builtin_model, artifacts_dir: Path) -> None:  # noqa: ANN001
    """pruned loses accuracy; pruned-distilled recovers to within 1.5 pts, at least as well as retrained."""
    store = ArtifactStore(str(artifacts_dir))
    test = load_digits_split("test")
    top = {name: top1(build_compressed(JobSpec(variant=parse_variant(name)), store).model, test)
           for name in ("pruned", "pruned-retrained", "pruned-distilled")}
    baseline = top1(builtin_model.model, test)
    assert top["pruned"] < baseline
    assert top["pruned-distilled"] >= baseline - 0.015
    assert top["pruned-distilled"] >= top["pruned-retrained"]


def test_trained_variant_is_cached_by_recipe_and_not_trained_again(builtin_model, artifacts_dir: Path) -> None:  # noqa: ANN001
    store = ArtifactStore(str(artifacts_dir))
    spec = JobSpec(variant=parse_variant("pruned-retrained"))
    build_compressed(spec, store)
    again = build_compressed(spec, store)
    assert not again.trained_now and again.history == []
    from worker.variants import ArtifactMissing

    with pytest.raises(ArtifactMissing, match="share FARM_ARTIFACTS"):  # another seed is another recipe
        build_compressed(JobSpec(variant=parse_variant("pruned-retrained"), seed=1), store, allow_train=False)
