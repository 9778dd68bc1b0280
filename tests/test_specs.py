from __future__ import annotations

import pytest

from shared.devices import Device
from shared.errors import FarmError
from shared.routing import queue_device_class, queue_for_target, worker_queues
from shared.specs import BenchSpec, JobSpec, example_variants, parse_variant


def test_every_example_variant_parses_and_round_trips_through_json() -> None:
    for name in example_variants():
        spec = JobSpec(variant=parse_variant(name), bench=BenchSpec(repeats=3, limit=10))
        assert JobSpec.from_json(spec.to_json()) == spec


def test_pruned_distilled_uint8_is_the_seed_pipeline() -> None:
    v = parse_variant("pruned-distilled-uint8", model="google/vit-base-patch16-224")
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
    v = parse_variant("pruned-retrained", model="google/vit-base-patch16-224")
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


@pytest.mark.parametrize("bad", ["fast", "prune-r1.5", "prune-r0", "prune-all-r1", "quant-int3", "pruned-uint9", ""])
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
    assert parse_variant(variant).stage_names() == stages
    assert [parse_variant(s).name for s in stages] == stages  # each stage is a variant of its own


def test_every_example_variant_has_distinct_stages_in_run_order() -> None:
    for name in example_variants():
        slots = [stage.slot for stage, _text, _spec in parse_variant(name).stages()]
        assert slots == sorted(slots, key=["prune", "train", "quant"].index), name
        assert len(slots) == len(set(slots)), name
        if name != "baseline":
            assert slots, name


def test_stages_carry_their_specs_and_text() -> None:
    v = parse_variant("prune-all-r0.25-distilled-int8dyn")
    assert [(stage.token, text) for stage, text, _ in v.stages()] == [
        ("prune-all-rX", "prune-all-r0.25"), ("distilled", "distilled"), ("int8dyn", "int8dyn")]
    assert [spec for _, _, spec in v.stages()] == [v.prune, v.train, v.quant]


def test_schemes_declare_devices_and_runtimes() -> None:
    assert parse_variant("quant-int8dyn").supports("gpu", "torch") == "int8dyn runs on cpu only"
    assert parse_variant("quant-int8dyn").supports("cpu", "torch") is None
    assert parse_variant("pruned-distilled-float8").supports("gpu", "torch") is None
    assert parse_variant("quant-uint8").supports(None, "torch") is None
    assert "not available on the tvm runtime" in (parse_variant("quant-uint8").supports("cpu", "tvm") or "")


def test_training_defaults_belong_to_the_base_model() -> None:
    from shared.inputs import BUILTIN_MODEL
    from shared.specs import MODEL_TRAIN_DEFAULTS

    builtin = parse_variant("pruned-distilled", model=BUILTIN_MODEL).train
    hub = parse_variant("pruned-distilled", model="org/any-vit").train
    assert builtin is not None and hub is not None
    assert builtin.lr == MODEL_TRAIN_DEFAULTS[BUILTIN_MODEL]["lr"] != hub.lr


def test_a_job_spec_without_a_runtime_reads_as_torch() -> None:
    spec = JobSpec(variant=parse_variant("baseline"))
    data = spec.to_dict()
    del data["runtime"]  # a spec stored before runtimes existed
    assert JobSpec.from_dict(data) == spec and spec.runtime == "torch"


@pytest.mark.parametrize(("text", "kind", "index", "cls"),
                         [("cpu", "cpu", None, "cpu"), ("cuda", "cuda", 0, "gpu"), ("cuda:3", "cuda", 3, "gpu")])
def test_a_device_is_parsed_once(text: str, kind: str, index: int | None, cls: str) -> None:
    d = Device.parse(text)
    assert (d.kind, d.index, d.device_class) == (kind, index, cls)
    assert Device.parse(str(d)) == d


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", "CPU", "tpu:0", ""])
def test_bad_devices_raise_a_farm_error(bad: str) -> None:
    with pytest.raises(FarmError, match="cpu or cuda:N"):
        Device.parse(bad)


def test_workers_consume_their_class_host_and_host_class_queues() -> None:
    assert worker_queues("lab", Device.parse("cuda:1")) == ["gpu", "host.lab", "host.lab.gpu"]
    assert worker_queues("lab", Device.parse("cpu")) == ["cpu", "host.lab", "host.lab.cpu"]
    assert [queue_device_class(q) for q in ("cpu", "host.lab.gpu", "host.lab")] == ["cpu", "gpu", None]


def test_the_grammar_lists_every_registered_stage() -> None:
    from shared.stages import STAGES, grammar

    text = grammar()
    for stage in STAGES:
        assert stage.token in text and stage.summary in text
