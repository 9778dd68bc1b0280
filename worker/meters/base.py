"""The meter interface shared by every energy source."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


class MeterError(RuntimeError):
    """A meter could not read its source. Never turned into 0 J."""


@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy over one window. `None` means that part was not metered (not zero)."""

    duration_s: float
    cpu_energy_j: float | None
    gpu_energy_j: float | None
    source: str  # e.g. "measured:rapl", "estimated:cpu-time"
    dram_energy_j: float | None = None
    per_device_j: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # What was summed, e.g. ("package-0", "package-1", "dram-0", "dram-1"), ("gpu-0",), ("process-cpu-time",).
    domains: tuple[str, ...] = ()

    @property
    def total_energy_j(self) -> float:
        parts = [e for e in (self.cpu_energy_j, self.gpu_energy_j, self.dram_energy_j) if e is not None]
        if not parts:
            raise MeterError(f"{self.source} measured nothing")
        return sum(parts)

    @property
    def is_estimate(self) -> bool:
        return self.source.startswith("estimated:")


class _Window:
    """Holds a window's measurement; readable only after the `with` block has ended."""

    def __init__(self) -> None:
        self._m: EnergyMeasurement | None = None

    @property
    def measurement(self) -> EnergyMeasurement:
        if self._m is None:
            raise RuntimeError("the measurement is available once the window has closed")
        return self._m


class Meter(ABC):
    """One energy source. Use `with meter.window() as w: ...` then read `w.measurement`."""

    name: str = "meter"

    @abstractmethod
    def _begin(self) -> object:
        """Start a window and return the state `_end` needs."""

    @abstractmethod
    def _end(self, state: object, duration_s: float) -> EnergyMeasurement:
        """Close the window; raise MeterError when the source cannot be read."""

    def _abort(self, state: object) -> None:
        """Release what `_begin` started when the window's body raised (nothing by default)."""
        return None

    def close(self) -> None:
        """Release the source (NVML handles); nothing by default."""
        return None

    @contextmanager
    def window(self) -> Iterator[_Window]:
        win = _Window()
        state = self._begin()
        t0 = time.perf_counter()
        try:
            yield win
        except BaseException:
            self._abort(state)
            raise
        win._m = self._end(state, time.perf_counter() - t0)
