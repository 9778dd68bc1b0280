"""Each axis (runtimes, stages, meters, vendors, datasets) is declared once in shared/; the worker's
implementations are found from those descriptors, and these tests fail when the two sides disagree."""

from __future__ import annotations

import inspect

import pytest

from shared.datasets import DATASETS
from shared.devices import DEVICE_CLASSES
from shared.errors import FarmError
from shared.meters import METERS, meters_for
from shared.refs import every_ref, resolve
from shared.runtimes import RUNTIME_INFOS, RUNTIMES, RuntimeInfo
from shared.specs import QuantSpec, parse_variant
from shared.stages import ANY_RUNTIME, STAGES, grammar, quant_schemes
from shared.vendors import VENDORS


def test_every_module_function_reference_resolves_to_something_callable() -> None:
    refs = every_ref()
    assert len(refs) >= len(RUNTIME_INFOS) + len(METERS) + len(DATASETS) + len(STAGES)
    for where, ref in refs.items():
        assert callable(resolve(ref)), f"{where}: {ref} is not callable"


def test_a_reference_without_a_colon_is_refused() -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        resolve("worker.meters.nvml.open_meter")


def test_the_workers_runtimes_are_the_declared_ones_and_a_mismatch_fails_at_import(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.runtimes as runtimes
    from worker.installed import NEEDS

    assert list(runtimes.RUNTIMES) == list(RUNTIMES) == list(NEEDS)
    assert all(cls.name == name for name, cls in runtimes.RUNTIMES.items())
    wrong = RuntimeInfo("tensorrt", ("gpu",), (), "worker.runtimes.torch_eager:TorchRuntime", "misnamed")
    monkeypatch.setattr(runtimes, "RUNTIME_INFOS", (*RUNTIME_INFOS, wrong))
    with pytest.raises(ImportError, match="tensorrt"):
        runtimes._registry()


def test_stages_name_only_declared_runtimes_and_device_classes() -> None:
    tokens = [s.token for s in STAGES]
    assert len(tokens) == len(set(tokens))
    for stage in STAGES:
        assert set(stage.apply) <= {*RUNTIMES, ANY_RUNTIME}, stage.token
        assert set(stage.devices) <= set(DEVICE_CLASSES), stage.token


def test_quant_schemes_come_from_the_stages_and_an_unknown_one_is_refused() -> None:
    assert quant_schemes() == tuple(s.token for s in STAGES if s.slot == "quant")
    for scheme in quant_schemes():
        assert parse_variant(f"quant-{scheme}").quant == QuantSpec(scheme)
        assert scheme in grammar()
    with pytest.raises(FarmError, match="unknown quantization scheme"):
        QuantSpec("int3")


def test_each_slot_makes_one_spec_class_which_every_stage_of_it_builds() -> None:
    """The descriptor carries the spec class: the parser and the JSON reader both build from it."""
    import typing

    from shared.specs import JobSpec, VariantSpec
    from shared.stages import SLOTS, spec_class

    fields = typing.get_type_hints(VariantSpec)
    for slot in SLOTS:
        assert {s.spec for s in STAGES if s.slot == slot} == {spec_class(slot)}
        assert spec_class(slot) in typing.get_args(fields[slot]), slot
    for stage in STAGES:
        groups = stage.matches(stage.token.replace("X", "0.25"))
        assert groups is not None, stage.token
        assert isinstance(stage.spec(**stage.build(groups)), stage.spec)
    variant = parse_variant("prune-all-r0.25-distilled-bf16")
    assert [type(spec) for _, _, spec in variant.stages()] == [spec_class(slot) for slot in SLOTS]
    assert JobSpec.from_json(JobSpec(variant=variant).to_json()).variant == variant


def test_the_bf16_scheme_is_one_stage_everywhere_schemes_are_listed() -> None:
    """bf16 was added as docs/extending.md's worked example: one module and one Stage, nothing else."""
    from click.testing import CliRunner

    from controller.cli import main
    from controller.predict.features import work

    assert parse_variant("quant-bf16").quant == QuantSpec("bf16")
    distilled = parse_variant("pruned-distilled-bf16")
    assert distilled.quant == QuantSpec("bf16") and distilled.train is not None and distilled.prune is not None
    assert distilled.stage_names() == ["baseline", "pruned", "pruned-distilled", "pruned-distilled-bf16"]
    assert distilled.supports("gpu", "torch") is None and distilled.supports("cpu", "torch") is None
    assert "bf16 is not available on the onnxruntime runtime" in (distilled.supports("cpu", "onnxruntime") or "")
    assert parse_variant("quant-int4").supports("gpu", "torch") == "int4 runs on cpu only"
    text = CliRunner().invoke(main, ["variants"]).output
    assert "| bf16 " in text and "quant-bf16" in text
    # the predictor's work model reads the descriptor: bf16 stores 2 bytes a weight, computes in float
    cost = {"model_id": "builtin:vit-digits", "params": 1000, "macs": 10_000, "base_macs": 10_000, "batch_size": 8}
    fp32, bf16, uint8 = (work(v, **cost) for v in ("baseline", "quant-bf16", "quant-uint8"))
    assert bf16.weight_bytes == fp32.weight_bytes / 2 == 2 * uint8.weight_bytes
    assert bf16.gemm_fp32_macs == fp32.gemm_fp32_macs and bf16.gemm_int8_macs == bf16.dequant_weights == 0


def test_every_vendor_has_its_meters_and_every_meter_a_known_vendor() -> None:
    names = {v.name for v in VENDORS}
    for meter in METERS:
        assert set(meter.vendors) <= names, meter.name
        params = list(inspect.signature(resolve(meter.opens)).parameters)
        assert params == ["device", "settings", "notes"], meter.name
    for vendor in VENDORS:
        assert meters_for(vendor.name), vendor.name  # every device gets a meter
        if vendor.device_class == "gpu":  # and a GPU one of its own vendor, never another's
            assert [m.name for m in meters_for(vendor.name) if m.vendors != meters_for("cpu")[0].vendors]
    assert [m.name for m in meters_for("amd")] == ["amdsmi", "cpu"]
    assert [m.name for m in meters_for("nvidia")] == ["nvml", "cpu"]


def test_the_workers_datasets_are_the_declared_ones() -> None:
    from shared.inputs import DATASET_ARGUMENTS, DATASET_GRAMMAR
    from worker.workloads.registry import DATASETS as LOADERS

    assert list(LOADERS) == [d.kind for d in DATASETS] == list(DATASET_ARGUMENTS)
    assert all(d.grammar in DATASET_GRAMMAR for d in DATASETS)


def test_help_texts_name_every_runtime() -> None:
    from click.testing import CliRunner

    from controller.cli import main

    for command in (["submit", "--help"], ["compare", "--help"], ["results", "--help"]):
        out = CliRunner().invoke(main, command).output
        assert all(r in out for r in RUNTIMES), command


def test_the_controller_builds_the_celery_app_without_importing_the_worker() -> None:
    """shared/celery_app.py builds the app both sides use; only `farm worker` itself may import worker.app."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "controller"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "worker.app":
                raise AssertionError(f"{path.name} imports worker.app")
