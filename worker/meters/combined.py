"""One window over several meters, summed by energy domain."""

from __future__ import annotations

from typing import Any

from worker.meters.base import EnergyMeasurement, Meter, MeterError


class CombinedMeter(Meter):
    """Opens every meter's window together and merges their domains; sources are joined by '+'.

    Two meters that report the same domain would count its joules twice, so that is refused.
    """

    def __init__(self, meters: list[Meter], notes: tuple[str, ...] = ()) -> None:
        if not meters:
            raise ValueError("CombinedMeter needs at least one meter")
        self.meters, self.notes = list(meters), notes
        longest = max(self.meters, key=lambda m: m.min_window_s)
        self.min_window_s, self.min_window_reason = longest.min_window_s, longest.min_window_reason
        self.name = "+".join(m.name for m in self.meters)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.meters:
            out.update(m.describe())
        return out

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def _begin(self) -> list[object]:
        states: list[object] = []
        try:
            for m in self.meters:
                states.append(m._begin())
        except BaseException:
            for m, s in zip(self.meters, states, strict=False):
                m._abort(s)
            raise
        return states

    def _abort(self, state: Any) -> None:
        for m, s in zip(self.meters, state, strict=True):
            m._abort(s)

    def _settle(self) -> None:
        for m in self.meters:
            m._settle()

    def _end(self, state: Any, duration_s: float) -> EnergyMeasurement:
        results = [m._end(s, duration_s) for m, s in zip(self.meters, state, strict=True)]
        domains: dict[str, float] = {}
        warnings: list[str] = list(self.notes)
        for r in results:
            for domain, joules in r.energy_by_domain_j.items():
                if domain in domains:
                    raise MeterError(f"two meters report domain {domain!r} ({self.name}): it would count twice")
                domains[domain] = joules
            warnings.extend(r.warnings)
        return EnergyMeasurement(duration_s=duration_s, source=self.name, energy_by_domain_j=domains,
                                 warnings=tuple(warnings))
