"""The meter interface shared by every energy source, and the measurement every meter returns.

A measurement is energy by domain: `package-0`, `dram-1`, `psys`, `gpu-0`, `process-cpu-time`. The CPU, DRAM
and GPU totals are sums over the domains of that kind; a kind with no domain is None (not metered), never 0.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.energy import is_estimate

DomainKind = Literal["cpu", "dram", "gpu"]
# Which kind each domain family counts as. `process-cpu-time` is the estimate's single domain.
DOMAIN_KINDS: dict[str, DomainKind] = {
    "package": "cpu", "psys": "cpu", "process-cpu-time": "cpu", "dram": "dram", "gpu": "gpu",
}


class MeterError(RuntimeError):
    """A meter could not read its source. Never turned into 0 J."""


def domain_kind(domain: str) -> DomainKind:
    """The kind of a domain label: `package-1` -> cpu, `dram-0` -> dram, `gpu-3` -> gpu."""
    family = re.sub(r"-\d+$", "", domain)
    try:
        return DOMAIN_KINDS[family]
    except KeyError:
        raise MeterError(f"unknown energy domain {domain!r}; known: {', '.join(DOMAIN_KINDS)}") from None


@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy over one window, in joules by domain. A kind with no domain was not metered (None, not zero)."""

    duration_s: float
    source: str  # e.g. "measured:rapl", "estimated:cpu-time", "measured:nvml-counter+measured:rapl"
    energy_by_domain_j: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for domain in self.energy_by_domain_j:
            domain_kind(domain)  # refuses an unknown label, so no joule goes uncounted

    @property
    def domains(self) -> tuple[str, ...]:
        """What was summed, e.g. ("package-0", "package-1", "dram-0", "dram-1")."""
        return tuple(self.energy_by_domain_j)

    def energy_of_kind_j(self, kind: DomainKind) -> float | None:
        parts = [e for d, e in self.energy_by_domain_j.items() if domain_kind(d) == kind]
        return sum(parts) if parts else None

    @property
    def cpu_energy_j(self) -> float | None:
        return self.energy_of_kind_j("cpu")

    @property
    def dram_energy_j(self) -> float | None:
        return self.energy_of_kind_j("dram")

    @property
    def gpu_energy_j(self) -> float | None:
        return self.energy_of_kind_j("gpu")

    @property
    def total_energy_j(self) -> float:
        if not self.energy_by_domain_j:
            raise MeterError(f"{self.source} measured nothing")
        return sum(self.energy_by_domain_j.values())

    @property
    def is_estimate(self) -> bool:
        return is_estimate(self.source)


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
    # Seconds spent reading the source (counter reads, polls), for the overhead benchmark.
    overhead_s: float = 0.0
    # The shortest window whose reading this source resolves well, in seconds: the benchmark repeats its pass over
    # the data inside one window until it lasts this long (an energy counter that updates every ~100 ms cannot
    # meter a 60 ms pass).
    min_window_s: float = 0.0
    # Why min_window_s is what it is; every result row records both.
    min_window_reason: str = "no minimum: one pass over the data is one window"

    @abstractmethod
    def _begin(self) -> object:
        """Start a window and return the state `_end` needs."""

    @abstractmethod
    def _end(self, state: object, duration_s: float) -> EnergyMeasurement:
        """Close the window; raise MeterError when the source cannot be read."""

    def _abort(self, state: object) -> None:
        """Release what `_begin` started when the window's body raised (nothing by default)."""
        return None

    def _settle(self) -> None:
        """Wait for work queued inside the window (a GPU's kernels) before its duration is taken; the energy and
        the duration then cover the same interval. Nothing by default."""
        return None

    def close(self) -> None:
        """Release the source (NVML handles); nothing by default."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts about the metered hardware that results record (e.g. gpu_driver); none by default."""
        return {}

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
        try:
            self._settle()
        except BaseException:
            self._abort(state)
            raise
        win._m = self._end(state, time.perf_counter() - t0)
