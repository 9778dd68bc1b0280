from __future__ import annotations

import pytest

from shared.errors import FarmError
from shared.specs import BenchSpec, JobSpec, example_variants, parse_variant, queue_for_target


def test_every_example_variant_parses_and_round_trips_through_json() -> None:
    for name in example_variants():
        spec = JobSpec(variant=parse_variant(name), bench=BenchSpec(repeats=3, limit=10))
        assert JobSpec.from_json(spec.to_json()) == spec


def test_pruned_distilled_uint8_is_the_seed_pipeline() -> None:
    v = parse_variant("pruned-distilled-uint8", builtin=False)
    assert v.prune is not None and v.prune.method == "all" and v.prune.ratio == pytest.approx(0.10)
    assert v.prune.round_to == 4
    assert v.train is not None and v.train.kind == "distilled"
    assert v.train.alpha == 0.25 and v.train.temperature == 4.0
    assert v.quant is not None and v.quant.scheme == "uint8"


def test_builtin_workload_gets_short_training_defaults() -> None:
    v = parse_variant("pruned-distilled")
    assert v.train is not None
    assert (v.train.epochs, v.train.lr, v.train.batch_size, v.train.alpha, v.train.temperature) == (
        10, 1e-3, 32, 0.5, 2.0)


def test_hub_models_get_the_seed_training_recipe() -> None:
    v = parse_variant("pruned-retrained", builtin=False)
    assert v.train is not None
    assert (v.train.lr, v.train.epochs, v.train.batch_size, v.train.weight_decay) == (3e-5, 10, 16, 0.01)


@pytest.mark.parametrize(
    ("name", "method", "ratio"),
    [("prune-r0.2", "mlp", 0.2), ("prune-all-r0.35", "all", 0.35), ("prune-unstructured-r.5", "unstructured", 0.5)],
)
def test_prune_methods_and_ratios(name: str, method: str, ratio: float) -> None:
    v = parse_variant(name)
    assert v.prune is not None and (v.prune.method, v.prune.ratio) == (method, ratio)
    assert v.train is None and v.quant is None


@pytest.mark.parametrize("bad", ["fast", "prune-r1.5", "prune-r0", "prune-all-r1", "quant-int4", "pruned-uint9", ""])
def test_bad_variant_names_raise_a_farm_error(bad: str) -> None:
    with pytest.raises(FarmError):
        parse_variant(bad)


def test_unknown_variant_message_lists_valid_ones() -> None:
    with pytest.raises(FarmError, match="baseline.*pruned-distilled-uint8"):
        parse_variant("nope")


def test_targets_map_to_queues() -> None:
    assert queue_for_target("cpu") == "cpu"
    assert queue_for_target("gpu") == "gpu"
    assert queue_for_target("host:lab-3") == "host.lab-3"
    assert queue_for_target("host:lab-3:gpu") == "host.lab-3.gpu"
    for bad in ("tpu", "host:", "host:lab-3:tpu", "host:a:b:c"):
        with pytest.raises(FarmError):
            queue_for_target(bad)


@pytest.mark.parametrize(
    ("variant", "stages"),
    [
        ("baseline", ["baseline"]),
        ("quant-int8dyn", ["baseline", "quant-int8dyn"]),
        ("pruned-distilled-uint8", ["baseline", "pruned", "pruned-distilled", "pruned-distilled-uint8"]),
        ("prune-all-r0.25-int8dyn", ["baseline", "prune-all-r0.25", "prune-all-r0.25-int8dyn"]),
        ("prune-r0.10-retrained", ["baseline", "prune-r0.10", "prune-r0.10-retrained"]),
    ],
)
def test_farm_run_benchmarks_each_stage_on_the_way(variant: str, stages: list[str]) -> None:
    from controller.cli import stage_names

    assert stage_names(parse_variant(variant)) == stages
    assert [parse_variant(s).name for s in stages] == stages  # each stage is a variant of its own
