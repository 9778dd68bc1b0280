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
            "noise": noise_flag([r.time_per_sample_s for r in repeats if not r.contention.get("contended")])}
    rows = []
    for i, rep in enumerate(repeats):
        hour, tz = local_time_info(rep.started_at)
        e, n = rep.energy, rep.samples
        total_j = e.total_energy_j
        row = ResultCreate(
            **{k: v for k, v in host.items() if k != "noise"},
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
            noise=_joined(rep.contention.get("contention_note"), host["noise"]),
            **{k: v for k, v in rep.contention.items() if k in WINDOW_COLUMNS},
        )
        rows.append(row.model_dump())
    return rows


# What worker/bench.py and worker/contention.py record of each window (migration 0010).
WINDOW_COLUMNS = ("foreign_cpu_cores", "foreign_gpu", "contended", "cooldown_s", "min_window_s", "min_window_reason")


def _joined(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _per(energy_j: float | None, samples: int) -> float | None:
    return None if energy_j is None else energy_j / samples


NOISE_CV = 0.10  # a run whose repeats' robust CV of time per sample exceeds this is flagged
OUTLIER_Z = 3.5  # a repeat whose modified z-score (0.6745 (x - median) / MAD; Iglewicz & Hoaglin) exceeds this
OUTLIER_MIN = 0.10  # ... and that is more than 10 % from the median, is an outlier
MAD_TO_SD = 1.4826  # MAD x this estimates the standard deviation of normal data


def noise_flag(times_s: list[float]) -> str | None:
    """Why a run's repeats (time per sample, seconds) are too noisy to trust without a look, or None.

    Robust statistics, so that a few bad repeats cannot hide behind each other: outliers are repeats far from the
    median in units of the median absolute deviation (MAD), each named with its value; otherwise a robust CV
    (1.4826 MAD / median) above NOISE_CV is named. Fewer than 3 repeats say nothing either way."""
    import statistics

    if len(times_s) < 3:
        return None
    median = statistics.median(times_s)
    mad = statistics.median(abs(t - median) for t in times_s)

    def far(t: float) -> bool:
        if abs(t / median - 1) <= OUTLIER_MIN:
            return False
        return mad == 0 or 0.6745 * abs(t - median) / mad > OUTLIER_Z

    outliers = [i for i, t in enumerate(times_s) if far(t)]
    if outliers and len(outliers) < len(times_s) / 2:
        values = ", ".join(f"{times_s[i] * 1e3:.3g}" for i in outliers)
        return (f"outlier repeat{'s' if len(outliers) > 1 else ''} {','.join(map(str, outliers))}: {values} "
                f"ms/sample against a median of {median * 1e3:.3g} (MAD {mad * 1e3:.2g})")
    cv = MAD_TO_SD * mad / median if median else float("inf")
    if cv > NOISE_CV:
        return f"repeats vary: CV {cv:.0%} (robust: 1.4826 MAD / median) > {NOISE_CV:.0%}"
    return None
