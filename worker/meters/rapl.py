"""RAPL energy counters through the Linux powercap sysfs tree (Intel, and AMD, which uses the same tree).

Why not pyRAPL: it hard-codes /sys, ignores counter wraparound and is unmaintained since 2019. This reader
takes its root from FARM_POWERCAP_ROOT (so tests use a fake tree) and polls in the background often enough
to see every wrap of `energy_uj`, whose range (`max_energy_range_uj`) is crossed in minutes at full load.

Count each joule once. The tree is a hierarchy, not a list of sockets: a top-level zone may be a package
(`package-N`), the platform (`psys`, which already contains the packages and more), or, under
`intel-rapl-mmio:N`, a second interface to a package that the MSR zone `intel-rapl:N` also reports. Inside a
package, `core` and `uncore` are parts of it and `dram` is beside it. By default farm sums each socket's
package (the MSR zone, or the MMIO copy only where no MSR zone exists) and its DRAM: never psys, core or
uncore. With FARM_RAPL_DOMAINS=psys it counts psys alone. Each measurement says which domains it summed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from worker.meters.base import EnergyMeasurement, Meter, MeterError
from worker.meters.poller import Poller

# The counter updates about every millisecond; shorter windows read mostly quantisation noise.
RAPL_UPDATE_PERIOD_S = 0.001
MIN_WINDOW_S = 10 * RAPL_UPDATE_PERIOD_S
# Assumed ceiling on one domain's power, to choose a poll interval that sees every wrap.
MAX_DOMAIN_POWER_W = 1000.0


RAPL_MODES = ("package+dram", "psys")


class RaplPermissionError(MeterError):
    """RAPL is there but its counter cannot be read: the reason (root-only since Linux 5.10) and the fixes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"cannot read {path}: permission denied (RAPL energy counters are readable by root only since Linux "
            "5.10, a fix for the PLATYPUS power side channel). Grant read access on the host: a udev rule or a "
            "chmod at boot (`chmod a+r /sys/class/powercap/intel-rapl*/energy_uj "
            "/sys/class/powercap/intel-rapl*/*/energy_uj`), or run the worker with the CAP_DAC_READ_SEARCH "
            "capability; see docs/security.md, \"RAPL\""
        )


@dataclass(frozen=True)
class RaplDomain:
    """One counter: `kind` is "package", "dram" or "psys"; `label` is what results name it (e.g. dram-1)."""

    name: str
    kind: str
    path: Path
    max_energy_range_uj: int
    label: str = ""

    def read_uj(self) -> int:
        target = self.path / "energy_uj"
        try:
            return int(target.read_text().strip())
        except PermissionError:
            raise RaplPermissionError(target) from None
        except (OSError, ValueError) as exc:
            raise MeterError(f"cannot read {target}: {exc}") from None


def discover_domains(root: str | Path, mode: str = "package+dram") -> list[RaplDomain]:
    """The domains to sum, each once (see the module doc): packages then DRAMs by socket, or psys alone."""
    root = Path(root)
    if mode not in RAPL_MODES:
        raise MeterError(f"FARM_RAPL_DOMAINS must be one of {', '.join(RAPL_MODES)}, got {mode!r}")
    if not root.is_dir():
        raise MeterError(f"no powercap tree at {root} (no RAPL on this machine, or not exposed to it)")
    msr: dict[int, Path] = {}
    mmio: dict[int, Path] = {}
    psys: list[Path] = []
    for zone in sorted(root.iterdir()):
        prefix, _, index = zone.name.partition(":")
        if prefix not in ("intel-rapl", "intel-rapl-mmio") or not index.isdigit():
            continue  # subzones (intel-rapl:0:1, linked at the top level too) are reached through their package
        name = _read_name(zone)
        if name == "psys":
            psys.append(zone)
        elif name.startswith("package-") and name[len("package-"):].isdigit():
            (msr if prefix == "intel-rapl" else mmio).setdefault(int(name[len("package-"):]), zone)
    if mode == "psys":
        if not psys:
            raise MeterError(f"FARM_RAPL_DOMAINS=psys but {root} has no psys domain; use package+dram")
        return [_domain(z, "psys", "psys" if i == 0 else f"psys-{i}") for i, z in enumerate(psys)]
    packages = {s: msr.get(s) or mmio[s] for s in sorted(set(msr) | set(mmio))}
    if not packages:
        raise MeterError(f"no RAPL package domains under {root}")
    domains = [_domain(zone, "package", f"package-{s}") for s, zone in packages.items()]
    for s, zone in packages.items():
        drams = [sub for sub in sorted(zone.glob(f"{zone.name}:*")) if _read_name(sub) == "dram"]
        domains += [_domain(sub, "dram", f"dram-{s}") for sub in drams[:1]]
    return domains


def _read_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError as exc:
        raise MeterError(f"cannot read {zone / 'name'}: {exc}") from None


def _domain(zone: Path, kind: str, label: str) -> RaplDomain:
    try:
        max_range = int((zone / "max_energy_range_uj").read_text().strip())
    except PermissionError:
        raise MeterError(f"cannot read {zone / 'max_energy_range_uj'}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise MeterError(f"cannot read {zone / 'max_energy_range_uj'}: {exc}") from None
    return RaplDomain(f"{_read_name(zone)}@{zone.name}", kind, zone, max_range, label)


class RaplAccumulator:
    """Sums counter deltas across polls, adding `max_energy_range_uj` for each wrap seen between polls."""

    def __init__(self, domains: list[RaplDomain]) -> None:
        self.domains = domains
        self._last = [d.read_uj() for d in domains]
        self.total_uj = [0] * len(domains)
        self.wraps = [0] * len(domains)
        self._lock = threading.Lock()

    def sample(self) -> None:
        readings = [d.read_uj() for d in self.domains]
        with self._lock:
            for i, (domain, now) in enumerate(zip(self.domains, readings, strict=True)):
                delta = now - self._last[i]
                if delta < 0:  # wrapped once since the last poll
                    delta += domain.max_energy_range_uj
                    self.wraps[i] += 1
                self.total_uj[i] += delta
                self._last[i] = now

    def joules_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for domain, uj in zip(self.domains, self.total_uj, strict=True):
            out[domain.kind] = out.get(domain.kind, 0.0) + uj / 1e6
        return out


def poll_interval_for(domains: list[RaplDomain]) -> float:
    """Poll at least 4 times per fastest possible wrap, and at least once a second."""
    smallest_j = min(d.max_energy_range_uj for d in domains) / 1e6
    return max(0.001, min(1.0, smallest_j / MAX_DOMAIN_POWER_W / 4))


class RaplMeter(Meter):
    """CPU energy from RAPL, by domain: each socket's `package-N` and `dram-N` (or `psys`, in that mode)."""

    name = "measured:rapl"
    min_window_s = 1.0
    min_window_reason = ("RAPL counters update every ~1 ms but in uneven steps: 1 s keeps the step and the window's "
                         "edges under 1 % of a reading")

    def __init__(self, root: str | Path, poll_interval_s: float | None = None, mode: str = "package+dram") -> None:
        self.domains = discover_domains(root, mode)
        self.domains[0].read_uj()  # fail now, not mid-benchmark, when counters are unreadable
        self.poll_interval_s = poll_interval_s or poll_interval_for(self.domains)
        self.overhead_s = 0.0

    def _begin(self) -> tuple[RaplAccumulator, Poller]:
        t0 = time.perf_counter()
        acc = RaplAccumulator(self.domains)
        self.overhead_s += time.perf_counter() - t0
        return acc, Poller(acc.sample, self.poll_interval_s, "farm-rapl-poller").start()

    def _abort(self, state: object) -> None:
        _acc, poller = state  # type: ignore[misc]
        poller.cancel()

    def _end(self, state: object, duration_s: float) -> EnergyMeasurement:
        acc, poller = state  # type: ignore[misc]
        try:
            poller.stop()
        finally:
            self.overhead_s += poller.busy_s
        t0 = time.perf_counter()
        acc.sample()
        self.overhead_s += time.perf_counter() - t0
        warnings = []
        if duration_s < MIN_WINDOW_S:
            warnings.append(f"window {duration_s * 1e3:.2f} ms is shorter than 10 RAPL updates (~1 ms each)")
        return EnergyMeasurement(
            duration_s=duration_s,
            source=self.name,
            energy_by_domain_j={d.label: uj / 1e6 for d, uj in zip(acc.domains, acc.total_uj, strict=True)},
            warnings=tuple(warnings),
        )
