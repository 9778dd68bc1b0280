"""GPU energy through NVML (nvidia-ml-py, `import pynvml`).

Volta and newer GPUs have a total-energy counter (mJ): the window is its difference. Older ones (the seed's
Quadro P2000, Pascal) do not: a background thread samples power at >= 10 Hz and integrates it
(trapezoids). GPU work is synchronised at both edges of the window, before its duration is taken (a window's seconds
and joules cover the same kernels).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from worker.meters.base import EnergyMeasurement, Meter, MeterError
from worker.meters.poller import Poller

COUNTER_MIN_WINDOW_S = 0.1  # the energy counter advances in steps of tens of ms
DEFAULT_POLL_HZ = 20.0


def _load_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError:
        raise MeterError("nvidia-ml-py is not installed (pip install 'farm[worker]')") from None
    return pynvml


def nvml_index(cuda_index: int) -> int:
    """Map a CUDA ordinal to an NVML index, honouring a numeric CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        ids = [v.strip() for v in visible.split(",")]
        if all(v.isdigit() for v in ids) and cuda_index < len(ids):
            return int(ids[cuda_index])
    return cuda_index


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    driver: str
    power_limit_w: float | None
    has_energy_counter: bool


class NvmlMeter(Meter):
    """Energy of the given GPUs: `measured:nvml-counter` or `measured:nvml-polling` (if any lacks a counter)."""

    def __init__(
        self,
        indices: list[int],
        *,
        sync: Callable[[], None] | None = None,
        poll_hz: float = DEFAULT_POLL_HZ,
        nvml: ModuleType | None = None,
    ) -> None:
        if poll_hz < 10:
            raise ValueError("poll_hz must be at least 10")
        self.nvml = nvml or _load_pynvml()
        self._call(self.nvml.nvmlInit)
        self.handles = [self._call(self.nvml.nvmlDeviceGetHandleByIndex, i) for i in indices]
        self.sync = sync or (lambda: None)
        self.poll_interval_s = 1.0 / poll_hz
        driver = _text(self._call(self.nvml.nvmlSystemGetDriverVersion))
        self.gpus = [
            GpuInfo(i, _text(self._call(self.nvml.nvmlDeviceGetName, h)), driver, self._power_limit_w(h),
                    self._has_counter(h))
            for i, h in zip(indices, self.handles, strict=True)
        ]
        self.polling = not all(g.has_energy_counter for g in self.gpus)
        self.name = "measured:nvml-polling" if self.polling else "measured:nvml-counter"
        # The counter advances every ~100 ms and the board averages power over ~1 s, so a window must span several
        # seconds before either edge is a small part of it (ML.ENERGY counts >= 30 s of steady state; MLPerf 600 s).
        self.min_window_s = 5.0
        self.min_window_reason = ("NVML energy advances every ~100 ms and board power is averaged over ~1 s: "
                                  "5 s keeps both edges to a few % of a window")
        self.overhead_s = 0.0

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            raise MeterError(f"NVML {getattr(fn, '__name__', fn)} failed: {exc}") from None

    def _has_counter(self, handle: Any) -> bool:
        try:
            self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except self.nvml.NVMLError:
            return False

    def _power_limit_w(self, handle: Any) -> float | None:
        try:
            return self.nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
        except self.nvml.NVMLError:
            return None

    def describe(self) -> dict[str, Any]:
        """The first GPU's driver and power limit, which results record."""
        return {"gpu_driver": self.gpus[0].driver, "gpu_power_limit_w": self.gpus[0].power_limit_w}

    def _settle(self) -> None:
        self.sync()  # kernels queued in the window run inside its duration, not after it

    def _counters_mj(self) -> list[int]:
        return [int(self._call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, h)) for h in self.handles]

    def _powers_w(self) -> list[float]:
        return [self._call(self.nvml.nvmlDeviceGetPowerUsage, h) / 1000.0 for h in self.handles]

    def _begin(self) -> Any:
        self.sync()
        t0 = time.perf_counter()
        if not self.polling:
            start = self._counters_mj()
            self.overhead_s += time.perf_counter() - t0
            return start
        samples: list[tuple[float, list[float]]] = [(time.perf_counter(), self._powers_w())]
        self.overhead_s += time.perf_counter() - t0

        def sample() -> None:
            samples.append((time.perf_counter(), self._powers_w()))

        return samples, Poller(sample, self.poll_interval_s, "farm-nvml-poller").start()

    def _abort(self, state: Any) -> None:
        if self.polling:
            state[1].cancel()

    def _end(self, state: Any, duration_s: float) -> EnergyMeasurement:
        t0 = time.perf_counter()
        warnings: list[str] = []
        if not self.polling:
            per_gpu = [(end - start) / 1000.0 for start, end in zip(state, self._counters_mj(), strict=True)]
            if duration_s < COUNTER_MIN_WINDOW_S:
                warnings.append(f"window {duration_s * 1e3:.1f} ms is shorter than the NVML energy counter's "
                                f"update period (~{COUNTER_MIN_WINDOW_S * 1e3:.0f} ms)")
        else:
            samples, poller = state
            try:
                poller.stop()
            finally:
                self.overhead_s += poller.busy_s
            samples.append((time.perf_counter(), self._powers_w()))
            per_gpu = integrate_power(samples)
            if len(samples) < 5:
                warnings.append(f"only {len(samples)} power samples in a {duration_s * 1e3:.1f} ms window")
        self.overhead_s += time.perf_counter() - t0
        return EnergyMeasurement(
            duration_s=duration_s,
            source=self.name,
            energy_by_domain_j={f"gpu-{g.index}": e for g, e in zip(self.gpus, per_gpu, strict=True)},
            warnings=tuple(warnings),
        )

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def integrate_power(samples: list[tuple[float, list[float]]]) -> list[float]:
    """Trapezoidal integral of per-GPU power samples (seconds, watts) in joules."""
    if len(samples) < 2:
        raise MeterError("need at least two power samples to integrate")
    n = len(samples[0][1])
    energy = [0.0] * n
    for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False):
        for i in range(n):
            energy[i] += 0.5 * (p0[i] + p1[i]) * (t1 - t0)
    return energy


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
