"""One window over a CPU meter and an optional GPU meter, merged into one measurement."""

from __future__ import annotations

from typing import Any

from worker.meters.base import EnergyMeasurement, Meter


class CombinedMeter(Meter):
    """CPU energy from `cpu` (RAPL or the estimate) and GPU energy from `gpu` (NVML); sources joined by '+'."""

    def __init__(self, cpu: Meter, gpu: Meter | None = None, notes: tuple[str, ...] = ()) -> None:
        self.cpu, self.gpu, self.notes = cpu, gpu, notes
        self.name = "+".join(m.name for m in (gpu, cpu) if m is not None)

    @property
    def parts(self) -> list[Meter]:
        return [m for m in (self.gpu, self.cpu) if m is not None]

    @property
    def overhead_s(self) -> float:
        return sum(getattr(m, "overhead_s", 0.0) for m in self.parts)

    def close(self) -> None:
        for m in self.parts:
            m.close()

    def _begin(self) -> Any:
        states = []
        try:
            for m in self.parts:
                states.append(m._begin())
        except BaseException:
            for m, s in zip(self.parts, states, strict=False):
                m._abort(s)
            raise
        return states

    def _abort(self, state: Any) -> None:
        for m, s in zip(self.parts, state, strict=True):
            m._abort(s)

    def _end(self, state: Any, duration_s: float) -> EnergyMeasurement:
        results = [m._end(s, duration_s) for m, s in zip(self.parts, state, strict=True)]
        cpu = results[-1]
        gpu = results[0] if self.gpu is not None else None
        per_device: dict[str, float] = {}
        warnings: list[str] = list(self.notes)
        for r in results:
            per_device.update(r.per_device_j)
            warnings.extend(r.warnings)
        return EnergyMeasurement(
            duration_s=duration_s,
            cpu_energy_j=cpu.cpu_energy_j,
            gpu_energy_j=gpu.gpu_energy_j if gpu else None,
            dram_energy_j=cpu.dram_energy_j,
            source=self.name,
            per_device_j=per_device,
            warnings=tuple(warnings),
            domains=tuple(d for r in results for d in r.domains),
        )
