"""Contention: how much of the machine other work used while farm measured, and what to do about it.

Per window, foreign CPU is the CPU time the machine (or, where a cgroup quota limits this container, the cgroup)
spent busy, minus the CPU time of this worker's own process tree, divided by the window's wall time: cores busy
elsewhere. Everything reads /proc (and /sys/fs/cgroup) text, so the arithmetic is tested on synthetic files.
On a GPU, other processes on the device (NVML) are foreign work too.

`WindowGuard` applies FARM_CONTENTION to each benchmark window: `flag` records and marks a contended window,
`wait` holds until the machine has been quiet for FARM_CONTENTION_QUIET_S (at most FARM_CONTENTION_MAX_WAIT_S)
and redoes the repeat (at most FARM_CONTENTION_REDOS times), `refuse` fails the job. It also runs the optional
cool-down (FARM_COOLDOWN_MAX_S) before each window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import FarmError

POLICIES = ("wait", "flag", "refuse")
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


class ContentionRefused(FarmError):
    """FARM_CONTENTION=refuse and a window was contended: the job fails with the reason."""


def clock_ticks() -> int:
    """Jiffies per second (USER_HZ) of /proc's CPU times."""
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100


def machine_busy_s(proc_stat: str, ticks: int) -> float:
    """CPU-seconds every CPU of the machine spent busy since boot, from /proc/stat's text (idle and iowait out)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values[i] for i in _BUSY_FIELDS if i < len(values)) / ticks
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_pid_stat(text: str) -> tuple[str, int, float]:
    """(command name, parent pid, CPU jiffies of the process and its reaped children) from /proc/PID/stat."""
    left, right = text.index("("), text.rindex(")")
    fields = text[right + 2:].split()  # fields[0] is field 3 (state)
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return text[left + 1:right], int(fields[1]), float(utime + stime + cutime + cstime)


def process_table(proc_root: str = "/proc") -> dict[int, tuple[str, int, float]]:
    """{pid: (name, parent pid, CPU jiffies)} for every process readable now (ones that vanish are skipped)."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            out[int(entry.name)] = parse_pid_stat(Path(entry.path, "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree_of(root: int, table: dict[int, tuple[str, int, float]]) -> set[int]:
    """`root` and its descendants in a process table."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def cgroup_quota_cores(cgroup_root: str = "/sys/fs/cgroup") -> float | None:
    """Cores this container may use when a CPU quota limits it (cgroup v2 cpu.max, v1 cfs quota); None if none."""
    root = Path(cgroup_root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def cgroup_busy_s(cgroup_root: str = "/sys/fs/cgroup") -> float | None:
    """CPU-seconds this cgroup has used (v2 cpu.stat usage_usec, v1 cpuacct.usage); None where unreadable."""
    root = Path(cgroup_root)
    try:
        for line in (root / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    try:
        return int((root / "cpuacct" / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    """One instant: monotonic time (s), CPU-seconds busy where contention is read, and this process tree's."""

    at_s: float
    busy_s: float
    own_s: float
    source: str  # "proc-stat" (the machine) or "cgroup" (a container under a CPU quota)


def foreign_cpu_cores(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """Cores busy outside the worker's process tree between two snapshots (never below 0)."""
    wall = after.at_s - before.at_s
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall)


@dataclass
class CpuProbe:
    """Takes CpuSnapshots of this machine and of the process tree rooted at `root_pid` (default: this process)."""

    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    root_pid: int | None = None

    def __post_init__(self) -> None:
        self.ticks = clock_ticks()
        self.quota = cgroup_quota_cores(self.cgroup_root)
        self.use_cgroup = self.quota is not None and cgroup_busy_s(self.cgroup_root) is not None

    def snapshot(self) -> CpuSnapshot:
        root = self.root_pid or os.getpid()
        table = process_table(self.proc_root)
        own = sum(table[p][2] for p in tree_of(root, table)) / self.ticks
        if self.use_cgroup:
            busy = cgroup_busy_s(self.cgroup_root) or 0.0
            return CpuSnapshot(time.monotonic(), busy, own, "cgroup")
        busy = machine_busy_s(Path(self.proc_root, "stat").read_text(), self.ticks)
        return CpuSnapshot(time.monotonic(), busy, own, "proc-stat")

    def busiest(self, seconds: float = 1.0, top: int = 3) -> list[tuple[str, int, float]]:
        """The foreign processes that used the most CPU over `seconds`: (name, pid, cores), busiest first."""
        root = self.root_pid or os.getpid()
        first = process_table(self.proc_root)
        time.sleep(seconds)
        second = process_table(self.proc_root)
        own = tree_of(root, second)
        used = [(name, pid, (cpu - first[pid][2]) / self.ticks / seconds)
                for pid, (name, _, cpu) in second.items() if pid in first and pid not in own]
        return sorted((u for u in used if u[2] > 0.01), key=lambda u: -u[2])[:top]


def gpu_foreign(index: int, own_pids: set[int]) -> dict[str, Any] | None:
    """Other processes on GPU `index` and its utilisation (%) now, from NVML; None where NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        procs = [*pynvml.nvmlDeviceGetComputeRunningProcesses(handle),
                 *pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle)]
        util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except Exception:  # no NVML, no permission: the row says nothing rather than a false 0
        return None
    others = sorted({p.pid for p in procs if p.pid not in own_pids})
    return {"processes": others, "utilization_pct": float(util)}


@dataclass(frozen=True)
class ContentionPolicy:
    """What to do with a contended window, and when one is: more than `cores` busy elsewhere, or another
    process on the GPU. Seconds bound every wait."""

    mode: str = "wait"
    cores: float = 0.5
    quiet_s: float = 3.0
    max_wait_s: float = 120.0
    redos: int = 3
    cooldown_max_s: float = 0.0
    cooldown_delta_c: float = 3.0

    @classmethod
    def from_settings(cls, settings: Any) -> ContentionPolicy:
        return cls(settings.contention, settings.contention_cores, settings.contention_quiet_s,
                   settings.contention_max_wait_s, settings.contention_redos, settings.cooldown_max_s,
                   settings.cooldown_delta_c)


@dataclass
class WindowGuard:
    """One benchmark's contention probe and policy. `begin()` before a window, `judge(...)` after it: the
    repeat's contention columns, or None to redo it (policy wait), or ContentionRefused (policy refuse).
    `say(text)` reports waits where people look (the job's progress: `farm status`, `farm logs`)."""

    policy: ContentionPolicy
    say: Callable[[str], None] | None = None
    gpu_index: int | None = None
    probe: CpuProbe | None = None
    temperature: Callable[[], float | None] | None = None  # the device's °C, for the cool-down

    def __post_init__(self) -> None:
        self.probe = self.probe or CpuProbe()
        self.redone = 0
        self.idle_c = self.temperature() if self.temperature else None
        self._cooldown_s = 0.0

    def begin(self, checkpoint: Callable[[], None] | None = None) -> CpuSnapshot:
        self._cooldown_s = self.cool_down(checkpoint)
        assert self.probe is not None
        return self.probe.snapshot()

    def judge(self, before: CpuSnapshot, checkpoint: Callable[[], None] | None = None) -> dict[str, Any] | None:
        assert self.probe is not None
        cores = foreign_cpu_cores(before, self.probe.snapshot())
        gpu = None
        if self.gpu_index is not None:
            gpu = gpu_foreign(self.gpu_index, tree_of(os.getpid(), process_table(self.probe.proc_root)))
        reasons = []
        if cores > self.policy.cores:
            reasons.append(f"{cores:.2f} cores busy elsewhere > {self.policy.cores:g} (FARM_CONTENTION_CORES)")
        if gpu and gpu["processes"]:
            reasons.append(f"other processes on the GPU: {', '.join(map(str, gpu['processes']))}")
        columns = {"foreign_cpu_cores": round(cores, 3), "foreign_gpu": gpu, "contended": bool(reasons),
                   "cooldown_s": round(self._cooldown_s, 2), "contention_note": None}
        if not reasons:
            return columns
        why = "contended: " + "; ".join(reasons)
        if self.policy.mode == "refuse":
            raise ContentionRefused(f"{why}; FARM_CONTENTION=refuse fails the job ({self.busy_text()})")
        if self.policy.mode == "wait" and self.redone < self.policy.redos:
            self.redone += 1
            self.wait_quiet(why, checkpoint)
            return None
        if self.policy.mode == "wait":
            why += f" (kept after {self.redone} redone windows)"
        columns["contention_note"] = why
        return columns

    def busy_text(self) -> str:
        assert self.probe is not None
        busiest = self.probe.busiest(0.5, top=5)
        if not busiest:
            return "no single foreign process stood out"
        return "busiest elsewhere: " + ", ".join(f"{n}[{p}] {c:.2f} cores" for n, p, c in busiest)

    def wait_quiet(self, why: str, checkpoint: Callable[[], None] | None = None) -> float:
        """Hold until foreign CPU stays at or below the threshold for `quiet_s` (at most `max_wait_s`); seconds
        waited. Each wait is said once, with the busiest foreign processes."""
        assert self.probe is not None
        if self.say:
            self.say(f"waiting for a quiet machine (up to {self.policy.max_wait_s:g} s) to redo a window: {why}; "
                     f"{self.busy_text()}")
        start = time.monotonic()
        quiet_since = None
        while (waited := time.monotonic() - start) < self.policy.max_wait_s:
            if checkpoint:
                checkpoint()
            before = self.probe.snapshot()
            time.sleep(min(0.5, max(0.1, self.policy.quiet_s / 4)))
            if foreign_cpu_cores(before, self.probe.snapshot()) > self.policy.cores:
                quiet_since = None
                continue
            quiet_since = quiet_since if quiet_since is not None else before.at_s
            if time.monotonic() - quiet_since >= self.policy.quiet_s:
                return waited
        if self.say:
            self.say(f"the machine stayed busy for {self.policy.max_wait_s:g} s (FARM_CONTENTION_MAX_WAIT_S); "
                     "measuring anyway")
        return time.monotonic() - start

    def cool_down(self, checkpoint: Callable[[], None] | None = None) -> float:
        """Wait until the device is back within `cooldown_delta_c` °C of its temperature when the benchmark began
        (at most `cooldown_max_s`; 0 turns it off); seconds waited."""
        if self.policy.cooldown_max_s <= 0 or self.temperature is None or self.idle_c is None:
            return 0.0
        start = time.monotonic()
        while time.monotonic() - start < self.policy.cooldown_max_s:
            now = self.temperature()
            if now is None or now <= self.idle_c + self.policy.cooldown_delta_c:
                break
            if checkpoint:
                checkpoint()
            time.sleep(0.5)
        return time.monotonic() - start
