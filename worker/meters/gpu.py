"""What every GPU meter shares, whoever made the GPU: an energy counter read at both edges of a window where all
the GPUs have one, else power polled at >= 10 Hz on a background thread and integrated (trapezoids). GPU work is
synchronised at both edges, before the window's duration is taken, so its seconds and joules cover the same
kernels. A vendor's module (nvml.py, amd.py) only reads its library: names, counters (J), powers (W).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.meters.base import EnergyMeasurement, Meter, MeterError
from worker.meters.poller import Poller

COUNTER_MIN_WINDOW_S = 0.1  # energy counters advance in steps of tens of ms
DEFAULT_POLL_HZ = 20.0


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    driver: str
    power_limit_w: float | None
    has_energy_counter: bool


class GpuEnergyMeter(Meter):
    """Energy of some GPUs of one vendor: `measured:<library>-counter`, or `-polling` if any lacks a counter.

    A subclass opens its library, fills `gpus` (GpuInfo, one per metered GPU, in order) and `library` (the name
    in the source label), then calls `_ready()`; it reads counters in joules and powers in watts.
    """

    library = "gpu"
    gpus: list[GpuInfo]

    def __init__(self, *, sync: Callable[[], None] | None, poll_hz: float) -> None:
        if poll_hz < 10:
            raise ValueError("poll_hz must be at least 10")
        self.sync = sync or (lambda: None)
        self.poll_interval_s = 1.0 / poll_hz
        # The counter advances every ~100 ms and the board averages power over ~1 s, so a window must span several
        # seconds before either edge is a small part of it (ML.ENERGY counts >= 30 s of steady state; MLPerf 600 s).
        self.min_window_s = 5.0
        self.min_window_reason = ("GPU energy advances every ~100 ms and board power is averaged over ~1 s: "
                                  "5 s keeps both edges to a few % of a window")
        self.overhead_s = 0.0

    def _ready(self) -> None:
        self.polling = not all(g.has_energy_counter for g in self.gpus)
        self.name = f"measured:{self.library}-{'polling' if self.polling else 'counter'}"

    @abstractmethod
    def _counters_j(self) -> list[float]:
        """Each GPU's energy counter now, in joules."""

    @abstractmethod
    def _powers_w(self) -> list[float]:
        """Each GPU's power draw now, in watts."""

    def describe(self) -> dict[str, Any]:
        """The first GPU's driver and power limit, which results record."""
        return {"gpu_driver": self.gpus[0].driver, "gpu_power_limit_w": self.gpus[0].power_limit_w}

    def _settle(self) -> None:
        self.sync()  # kernels queued in the window run inside its duration, not after it

    def _begin(self) -> Any:
        self.sync()
        t0 = time.perf_counter()
        if not self.polling:
            start = self._counters_j()
            self.overhead_s += time.perf_counter() - t0
            return start
        samples: list[tuple[float, list[float]]] = [(time.perf_counter(), self._powers_w())]
        self.overhead_s += time.perf_counter() - t0

        def sample() -> None:
            samples.append((time.perf_counter(), self._powers_w()))

        return samples, Poller(sample, self.poll_interval_s, f"farm-{self.library}-poller").start()

    def _abort(self, state: Any) -> None:
        if self.polling:
            state[1].cancel()

    def _end(self, state: Any, duration_s: float) -> EnergyMeasurement:
        t0 = time.perf_counter()
        warnings: list[str] = []
        if not self.polling:
            per_gpu = [end - start for start, end in zip(state, self._counters_j(), strict=True)]
            if duration_s < COUNTER_MIN_WINDOW_S:
                warnings.append(f"window {duration_s * 1e3:.1f} ms is shorter than the {self.library} energy "
                                f"counter's update period (~{COUNTER_MIN_WINDOW_S * 1e3:.0f} ms)")
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


def visible_index(ordinal: int, env_vars: tuple[str, ...]) -> int:
    """Map a torch `cuda:N` ordinal to the vendor library's index, honouring the first numeric visibility list set
    among `env_vars` (CUDA_VISIBLE_DEVICES; HIP_/ROCR_VISIBLE_DEVICES on ROCm)."""
    import os

    for var in env_vars:
        visible = os.environ.get(var, "").strip()
        if visible:
            ids = [v.strip() for v in visible.split(",")]
            if all(v.isdigit() for v in ids) and ordinal < len(ids):
                return int(ids[ordinal])
            break
    return ordinal


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
