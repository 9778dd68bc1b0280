"""Run one job's work: build the variant, quantize on load, benchmark inside meters, return the rows.

Pure of queues and stores: `worker.lifecycle` claims a delivery, calls `execute` (a benchmark) or
`build_stage` (a chain's compress stage), and stores the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import FarmError
from shared.settings import Settings
from shared.specs import JobSpec

if TYPE_CHECKING:
    from worker.bench import RepeatMeasurement
    from worker.locks import LockHold
    from worker.meters.base import EnergyMeasurement
    from worker.meters.combined import CombinedMeter
    from worker.variants import CompressedModel, EpochCallback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCost:
    """Parameter count and multiply-accumulates for one sample (torch-pruning's count_ops_and_params)."""

    params: int
    macs: int


def model_cost(model: Any, example: Any) -> ModelCost:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return ModelCost(params=int(params), macs=int(macs))


def execute(
    spec: JobSpec,
    settings: Settings,
    device: str,
    *,
    log_line: Callable[[str], None] = log.info,
    on_epoch: EpochCallback | None = None,
    on_progress: Callable[[str], None] | None = None,
    allow_train: bool = True,
    host_lock: Callable[[], AbstractContextManager[LockHold]] | None = None,
) -> list[dict[str, Any]]:
    """Run a job spec on `device` and return one result row (a dict of Result columns) per repeat.

    The variant's model comes from the artifact cache, or is built (and trained, on `device`) when
    `allow_train` is true. `host_lock()` is held while anything heavy runs (training, the idle baseline
    and the benchmark), so that workers sharing a machine do not disturb each other's energy readings.
    """
    from worker.artifacts import ArtifactStore
    from worker.compression.quantize import quantize_model
    from worker.locks import no_lock
    from worker.variants import build_compressed, example_inputs
    from worker.workloads.data import load_dataset

    check_device(device)
    store = ArtifactStore(settings.artifacts)
    roots = settings.data_roots
    with (host_lock or (lambda: no_lock("host")))() as hold:
        compressed = build_compressed(spec, store, device=device, on_epoch=on_epoch, allow_train=allow_train,
                                      roots=roots)
        cost = model_cost(compressed.model, example_inputs(compressed.fmt))
        model = compressed.model.to(device)
        if spec.variant.quant is not None:
            model = quantize_model(model, spec.variant.quant, device)
        data = load_dataset(spec.dataset, "test", compressed.fmt, seed=spec.seed, roots=roots)
        rows = _measure(spec, settings, device, compressed.model_id, cost, model, data, log_line, on_progress)
    notes = [n for n in (compressed.fmt.note, hold.lost) if n]  # hold.lost: the measurement may have overlapped
    for row in rows:                                               # another worker's on this host; rows are kept
        row["energy_warnings"].extend(notes)
    return rows


def build_stage(
    spec: JobSpec,
    settings: Settings,
    device: str,
    *,
    on_epoch: EpochCallback | None = None,
    build_lock: Callable[[], AbstractContextManager[LockHold]] | None = None,
    host_lock: Callable[[], AbstractContextManager[LockHold]] | None = None,
) -> CompressedModel:
    """The compress stage of a chain: build (prune, train on `device`) and store the variant's artifact.

    `build_lock()` is held while building, so that chains of the same recipe submitted at once train it
    once; `host_lock()` keeps benchmarks on this host from running meanwhile.
    """
    from worker.artifacts import ArtifactStore, ensure_writable
    from worker.locks import no_lock
    from worker.variants import build_compressed

    check_device(device)
    store = ArtifactStore(settings.artifacts)
    ensure_writable(store)
    with (build_lock or (lambda: no_lock("build")))(), (host_lock or (lambda: no_lock("host")))():
        return build_compressed(spec, store, device=device, on_epoch=on_epoch, roots=settings.data_roots)


def _measure(spec: JobSpec, settings: Settings, device: str, model_id: str, cost: ModelCost, model: Any,
             data: Any, log_line: Callable[[str], None], on_progress: Callable[[str], None] | None
             ) -> list[dict[str, Any]]:
    """Idle baseline, then the benchmark, with the best meter this machine has."""
    from worker.bench import measure_idle, run_benchmark
    from worker.meters.select import build_meter

    meter = build_meter(device, settings)
    try:
        idle_s = settings.idle_s if spec.bench.idle_s is None else spec.bench.idle_s
        log_line(f"measuring idle power for {idle_s:g} s with {meter.name}")
        idle = measure_idle(meter, idle_s)
        log_line(f"benchmarking {spec.variant.name} on {device}: {len(data.head(spec.bench.limit))} samples")
        planned = spec.bench.planned_repeats

        def repeat_done(rep: RepeatMeasurement) -> None:
            if on_progress:
                on_progress(f"benchmark repeat {rep.repeat_index + 1}/{planned}")

        repeats = run_benchmark(model, data, spec.bench, device, meter, probe=lambda: probe_conditions(meter),
                                on_repeat=repeat_done)
    finally:
        meter.close()
    return result_rows(spec, settings, device, model_id, cost, meter, idle, repeats)


def probe_conditions(meter: CombinedMeter) -> dict[str, float | None]:
    """CPU and GPU temperatures (°C) now; None where the machine has no sensor."""
    from worker.conditions import cpu_temperature_c

    gpu = getattr(meter.gpu, "temperatures_c", None)
    return {"cpu_temp_c": cpu_temperature_c(), "gpu_temp_c": max(gpu()) if gpu else None}


def result_rows(
    spec: JobSpec,
    settings: Settings,
    device: str,
    model_id: str,
    cost: ModelCost,
    meter: CombinedMeter,
    idle: EnergyMeasurement | None,
    repeats: list[RepeatMeasurement],
) -> list[dict[str, Any]]:
    """One dict of Result columns per repeat. Energies are per sample; active = total - idle power x time."""
    from worker.conditions import cpu_governor
    from worker.hardware import cpu_model, gpu_name, local_time_info, software_versions

    idle_power_w = None if idle is None else idle.total_energy_j / idle.duration_s
    gpu_info = getattr(meter.gpu, "gpus", [None])[0]
    host_cpu, host_gpu, software, governor = cpu_model(), gpu_name(device), software_versions(), cpu_governor()
    rows = []
    for rep in repeats:
        hour, tz = local_time_info(rep.started_at)
        e, n = rep.energy, rep.samples
        total_j = e.total_energy_j
        rows.append(
            {
                "repeat_index": rep.repeat_index,
                "variant": spec.variant.name,
                "model_id": model_id,
                "dataset_id": spec.dataset,
                "host": settings.hostname,
                "cpu_model": host_cpu,
                "gpu_name": host_gpu,
                "device": device,
                "started_at": rep.started_at,
                "local_hour": hour,
                "timezone": tz,
                "samples": n,
                "top1": rep.top1,
                "top5": rep.top5,
                "time_per_sample_s": rep.time_per_sample_s,
                "cpu_energy_per_sample_j": _per(e.cpu_energy_j, n),
                "gpu_energy_per_sample_j": _per(e.gpu_energy_j, n),
                "dram_energy_per_sample_j": _per(e.dram_energy_j, n),
                "total_energy_per_sample_j": total_j / n,
                "idle_power_w": idle_power_w,
                "active_energy_per_sample_j": (
                    None if idle_power_w is None else (total_j - idle_power_w * e.duration_s) / n
                ),
                "energy_source": e.source,
                "energy_domains": "+".join(e.domains) or None,
                "energy_per_device_j": {k: v / n for k, v in e.per_device_j.items()},
                "energy_warnings": list(e.warnings),
                "cpu_temp_start_c": rep.conditions_start.get("cpu_temp_c"),
                "cpu_temp_end_c": rep.conditions_end.get("cpu_temp_c"),
                "gpu_temp_start_c": rep.conditions_start.get("gpu_temp_c"),
                "gpu_temp_end_c": rep.conditions_end.get("gpu_temp_c"),
                "cpu_governor": governor,
                "gpu_driver": gpu_info.driver if gpu_info else None,
                "gpu_power_limit_w": gpu_info.power_limit_w if gpu_info else None,
                "params": cost.params,
                "macs": cost.macs,
                "software": software,
            }
        )
    return rows


def _per(energy_j: float | None, samples: int) -> float | None:
    return None if energy_j is None else energy_j / samples


def check_device(device: str) -> None:
    """FarmError unless `device` is `cpu` or an existing `cuda:N`."""
    import torch

    if device == "cpu":
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FarmError(f"device {device!r} requested but CUDA is not available here")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise FarmError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
        return
    raise FarmError(f"device must be cpu or cuda:N, got {device!r}")


def preflight(spec: JobSpec, settings: Settings) -> None:
    """FarmError now, in one line, for what would fail the job later: the model folder, the dataset, the store
    of artifacts. For `farm run`, which has the worker's view of files."""
    from shared.inputs import model_kind, under_roots
    from worker.artifacts import ArtifactStore, ensure_writable
    from worker.workloads.data import ImageFormat, load_dataset

    ensure_writable(ArtifactStore(settings.artifacts))
    if model_kind(spec.model) == "path":
        from transformers import AutoConfig, AutoModelForImageClassification

        folder = under_roots(spec.model, settings.data_roots, what="model folder")
        if not folder.is_dir():
            raise FarmError(f"model folder not found: {folder}")
        try:
            config = AutoConfig.from_pretrained(folder)
            AutoModelForImageClassification.from_config(config)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FarmError(f"cannot load model {spec.model!r}: {first}") from None
    if spec.dataset.startswith("cifar100:"):  # reads and checks the file (the other datasets cannot fail)
        load_dataset(spec.dataset, "test", ImageFormat(3, 32, (0.0,) * 3, (1.0,) * 3), roots=settings.data_roots)
