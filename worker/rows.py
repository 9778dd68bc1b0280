"""Map a benchmark's measurements to result rows, validated against the result table's columns."""

from __future__ import annotations

from typing import Any

from shared.db.models import ResultCreate
from shared.settings import Settings
from shared.specs import JobSpec
from worker.bench import RepeatMeasurement
from worker.conditions import cpu_governor
from worker.cost import ModelCost
from worker.devices.base import DeviceHandle
from worker.hardware import local_time_info, software_versions
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
) -> list[dict[str, Any]]:
    """One validated row (a dict of Result columns) per repeat. Energies are per sample; active = total -
    idle power x time. `meter_facts` are the meter's hardware facts (gpu_driver, gpu_power_limit_w)."""
    idle_power_w = None if idle is None else idle.total_energy_j / idle.duration_s
    host = {"host": settings.hostname, "cpu_model": device.host_cpu(), "gpu_name": device.gpu_name,
            "device": str(device), "cpu_governor": cpu_governor(), "software": software_versions(),
            "gpu_driver": meter_facts.get("gpu_driver"), "gpu_power_limit_w": meter_facts.get("gpu_power_limit_w"),
            "threads": threads}
    rows = []
    for rep in repeats:
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
        )
        rows.append(row.model_dump())
    return rows


def _per(energy_j: float | None, samples: int) -> float | None:
    return None if energy_j is None else energy_j / samples
