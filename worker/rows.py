"""Map a benchmark's measurements to result rows, validated against the result table's columns."""

from __future__ import annotations

from typing import Any

from shared.db.models import ResultCreate
from shared.settings import Settings
from shared.specs import JobSpec
from worker.bench import RepeatMeasurement
from worker.conditions import cpu_governor
from worker.cost import ModelCost
from worker.deployer_rows import ModelFacts, deployer_columns
from worker.devices.base import DeviceHandle
from worker.hardware import fingerprint, hardware_id, hardware_label, local_time_info, software_versions
from worker.meters.base import EnergyMeasurement


def result_rows(
    spec: JobSpec,
    settings: Settings,
    device: DeviceHandle,
    model_id: str,
    cost: ModelCost,
    meter_facts: dict[str, Any],
    idle: EnergyMeasurement | None,
    repeats: list[RepeatMeasurement],
    notes: tuple[str, ...] = (),
    threads: int | None = None,
    runtime_version: str | None = None,
    warmup_batches: int | None = None,
    pair_indices: list[int] | None = None,
    model_facts: ModelFacts | None = None,
) -> list[dict[str, Any]]:
    """One validated row (a dict of Result columns) per repeat. Energies are per sample; active = total -
    idle power x time. `meter_facts` are the meter's hardware facts (gpu_driver, gpu_power_limit_w). Every row
    carries the machine's fingerprint and id, and the run's noise flag (None when its repeats agree)."""
    idle_power_w = None if idle is None else idle.total_energy_j / idle.duration_s
    gpu = {"gpu_name": device.gpu_name, "gpu_memory_gb": device.gpu_memory_gb, **meter_facts}
    fp = fingerprint(device.host_cpu(), threads, spec.runtime, runtime_version, gpu)
    host = {"host": settings.hostname, "cpu_model": device.host_cpu(), "gpu_name": device.gpu_name,
            "device": str(device), "cpu_governor": cpu_governor(), "software": software_versions(),
            "gpu_driver": meter_facts.get("gpu_driver"), "gpu_power_limit_w": meter_facts.get("gpu_power_limit_w"),
            "threads": threads, "hardware": fp, "hardware_id": hardware_id(fp), "hardware_label": hardware_label(fp),
            "runtime": spec.runtime, "warmup_batches": warmup_batches,
            "noise": noise_flag([r.time_per_sample_s for r in repeats])}
    rows = []
    for i, rep in enumerate(repeats):
        hour, tz = local_time_info(rep.started_at)
        e, n = rep.energy, rep.samples
        total_j = e.total_energy_j
        row = ResultCreate(
            **host,
            repeat_index=rep.repeat_index,
            variant=spec.variant.name,
            model_id=model_id,
            dataset_id=spec.dataset,
            started_at=rep.started_at,
            local_hour=hour,
            timezone=tz,
            samples=n,
            top1=rep.top1,
            top5=rep.top5,
            time_per_sample_s=rep.time_per_sample_s,
            cpu_energy_per_sample_j=_per(e.cpu_energy_j, n),
            gpu_energy_per_sample_j=_per(e.gpu_energy_j, n),
            dram_energy_per_sample_j=_per(e.dram_energy_j, n),
            total_energy_per_sample_j=total_j / n,
            idle_power_w=idle_power_w,
            active_energy_per_sample_j=None if idle_power_w is None else (total_j - idle_power_w * e.duration_s) / n,
            energy_source=e.source,
            energy_domains="+".join(e.domains) or None,
            energy_per_device_j={k: v / n for k, v in e.energy_by_domain_j.items()},
            energy_warnings=[*e.warnings, *notes],
            cpu_temp_start_c=rep.conditions_start.get("cpu_temp_c"),
            cpu_temp_end_c=rep.conditions_end.get("cpu_temp_c"),
            gpu_temp_start_c=rep.conditions_start.get("gpu_temp_c"),
            gpu_temp_end_c=rep.conditions_end.get("gpu_temp_c"),
            params=cost.params,
            macs=cost.macs,
            pair_index=None if pair_indices is None else pair_indices[i],
            passes=rep.passes,
            **deployer_columns(spec, rep, model_facts),
        )
        rows.append(row.model_dump())
    return rows


def _per(energy_j: float | None, samples: int) -> float | None:
    return None if energy_j is None else energy_j / samples


NOISE_CV = 0.10  # a run whose repeats' time per sample varies more than this is flagged
OUTLIER_FACTOR = 1.5  # a repeat slower or faster than the median by this factor is an outlier


def noise_flag(times_s: list[float]) -> str | None:
    """Why a run's repeats (time per sample, seconds) are too noisy to trust without a look, or None.

    An outlier repeat (more than OUTLIER_FACTOR away from the median: a cold first repeat of 5.3 ms among
    0.27 ms ones) is named; otherwise a coefficient of variation above NOISE_CV is. Fewer than 3 repeats say
    nothing either way."""
    import statistics

    if len(times_s) < 3:
        return None
    median = statistics.median(times_s)
    outliers = [i for i, t in enumerate(times_s) if t > median * OUTLIER_FACTOR or t < median / OUTLIER_FACTOR]
    if outliers:
        worst = max(outliers, key=lambda i: abs(times_s[i] / median - 1))
        return (f"outlier repeat{'s' if len(outliers) > 1 else ''} {','.join(map(str, outliers))}: "
                f"{times_s[worst] * 1e3:.3g} ms/sample against a median of {median * 1e3:.3g}")
    cv = statistics.stdev(times_s) / statistics.fmean(times_s)
    if cv > NOISE_CV:
        return f"repeats vary: CV {cv:.0%} > {NOISE_CV:.0%}"
    return None
