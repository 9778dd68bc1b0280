"""Contention: foreign CPU from synthetic /proc text, then real busy-loop processes during real benchmarks.

CI runs three test processes on two cores, so the machine is never quiet: the tests that need contention start
a hog that uses clearly more than their threshold, and the one that needs quiet measures the background first
and skips, saying why, when the machine is too busy to show it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from worker.contention import (
    ContentionPolicy,
    ContentionRefused,
    CpuProbe,
    CpuSnapshot,
    WindowGuard,
    cgroup_busy_s,
    cgroup_quota_cores,
    foreign_cpu_cores,
    machine_busy_s,
    parse_pid_stat,
    tree_of,
)

HOG = ("import ctypes, sys\n"
       "ctypes.CDLL(None).prctl(15, b'farm-hog', 0, 0, 0)\n"  # PR_SET_NAME: the name `wait` reports
       "while True: pass\n")


def _stat(pid: int, name: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    return (f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} {cutime} {cstime} "
            "20 0 1 0 100 1000 100 18446744073709551615")


def _fake_proc(root: Path, busy: int, procs: list[tuple[int, str, int, int]]) -> None:
    """A /proc tree: the aggregate cpu line (user=busy jiffies, idle 1000) and (pid, name, ppid, jiffies) stats."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 1000 0 0 0 0 0 0\ncpu0 {busy} 0 0 1000 0 0 0 0 0 0\n")
    for pid, name, ppid, jiffies in procs:
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(_stat(pid, name, ppid, jiffies, 0))


def test_busy_jiffies_and_process_stats_parse_from_proc_text() -> None:
    assert machine_busy_s("cpu  100 5 20 9000 50 1 2 3 0 0\ncpu0 1 0 0 0\n", 100) == pytest.approx(1.31)
    name, ppid, jiffies = parse_pid_stat(_stat(42, "py thon) x", 7, 30, 12, 5, 3))
    assert (name, ppid, jiffies) == ("py thon) x", 7, 50.0)  # a name with ") " in it still parses
    table = {1: ("init", 0, 0.0), 10: ("farm", 1, 0.0), 11: ("child", 10, 0.0), 12: ("grandchild", 11, 0.0),
             20: ("other", 1, 0.0)}
    assert tree_of(10, table) == {10, 11, 12}


def test_foreign_cores_are_machine_busy_time_minus_the_own_tree_per_second() -> None:
    before = CpuSnapshot(at_s=10.0, busy_s=100.0, own_s=40.0, source="proc-stat")
    after = CpuSnapshot(at_s=12.0, busy_s=104.0, own_s=42.0, source="proc-stat")
    assert foreign_cpu_cores(before, after) == pytest.approx(1.0)  # 4 CPU-s busy, 2 of them ours, over 2 s
    quiet = CpuSnapshot(at_s=12.0, busy_s=101.9, own_s=42.0, source="proc-stat")
    assert foreign_cpu_cores(before, quiet) == 0.0  # sampling skew never reads as negative work


def test_probe_reads_a_fake_proc_tree_and_counts_children_as_its_own(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _fake_proc(proc, 1000, [(500, "farm", 1, 300), (501, "torch-child", 500, 100), (900, "hog", 1, 50)])
    probe = CpuProbe(proc_root=str(proc), cgroup_root=str(tmp_path / "nocgroup"), root_pid=500)
    first = probe.snapshot()
    assert first.source == "proc-stat" and first.own_s == pytest.approx(4.0)
    _fake_proc(proc, 1000 + 300, [(500, "farm", 1, 350), (501, "torch-child", 500, 150), (900, "hog", 1, 250)])
    second = probe.snapshot()
    # 3 CPU-s busy, 1 CPU-s ours: 2 CPU-s elsewhere over the (real, tiny) wall time between the snapshots
    assert (second.busy_s - first.busy_s) - (second.own_s - first.own_s) == pytest.approx(2.0)


def test_a_cgroup_quota_switches_the_view_to_the_container(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    (v2 / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert cgroup_quota_cores(str(v2)) == 1.5 and cgroup_busy_s(str(v2)) == 2.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota_cores(str(v2)) is None  # no limit: the machine's /proc/stat is the view
    proc = tmp_path / "proc"
    _fake_proc(proc, 10, [(500, "farm", 1, 0)])
    (v2 / "cpu.max").write_text("100000 100000\n")
    assert CpuProbe(proc_root=str(proc), cgroup_root=str(v2), root_pid=500).snapshot().source == "cgroup"


class Hog:
    """Busy-loop processes named farm-hog that are NOT this process's children (a launcher starts them and exits,
    so they are reparented), as other work on the machine would be; `stop()` kills them."""

    def __init__(self, processes: int) -> None:
        launcher = (f"import subprocess, sys\nfor _ in range({processes}):\n"
                    f"    print(subprocess.Popen([sys.executable, '-c', {HOG!r}], start_new_session=True, "
                    f"stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)\n")
        out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True, timeout=30)
        self.pids = [int(line) for line in out.stdout.split()]

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def hog(processes: int = 3) -> Iterator[Hog]:
    h = Hog(processes)
    try:
        time.sleep(0.3)
        yield h
    finally:
        h.stop()


def test_a_real_busy_loop_reads_as_foreign_cores_and_is_named() -> None:
    probe = CpuProbe()
    with hog(2) as procs:
        before = probe.snapshot()
        time.sleep(1.0)
        cores = foreign_cpu_cores(before, probe.snapshot())
        busiest = probe.busiest(0.5, top=50)
    assert cores > 0.5, f"two busy loops read as only {cores:.2f} cores elsewhere"
    hogs = [(name, pid) for name, pid, _ in busiest if pid in procs.pids]
    assert sorted(hogs) == sorted(("farm-hog", pid) for pid in procs.pids), busiest


def _bench(guard: WindowGuard, repeats: int = 2) -> list:  # noqa: ANN401
    """A real benchmark of a small model on the CPU with `guard` applied to its windows (each about 0.4 s)."""
    import torch

    from shared.specs import BenchSpec
    from worker.bench import run_benchmark
    from worker.devices.cpu import CpuDevice
    from worker.meters.estimate import CpuTimeEstimate
    from worker.workloads.types import ImageSet

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).eval()
    data = ImageSet(torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,)), 10, "synthetic")
    spec = BenchSpec(batch_size=16, repeats=repeats, warmup_batches=1, max_warmup_batches=3, min_window_s=0.4)
    from shared.devices import Device

    return run_benchmark(model, data, spec, CpuDevice(Device("cpu")), CpuTimeEstimate(10.0), guard=guard)


def test_flag_records_a_contended_window_while_a_busy_loop_runs() -> None:
    with hog(3):
        reps = _bench(WindowGuard(ContentionPolicy(mode="flag", cores=0.3)))
    assert all(r.contention["contended"] for r in reps), [r.contention for r in reps]
    assert all(r.contention["foreign_cpu_cores"] > 0.3 for r in reps)
    assert "cores busy elsewhere" in reps[0].contention["contention_note"]
    assert reps[0].contention["min_window_s"] == 0.4 and reps[0].contention["min_window_reason"] == "set by the job"


def test_refuse_raises_with_the_reason_and_the_busiest_process() -> None:
    with hog(3), pytest.raises(ContentionRefused, match="FARM_CONTENTION=refuse.*busiest elsewhere"):
        _bench(WindowGuard(ContentionPolicy(mode="refuse", cores=0.3)))


def test_wait_redoes_a_contended_window_once_the_machine_is_quiet() -> None:
    probe = CpuProbe()
    before = probe.snapshot()
    time.sleep(1.0)
    background = foreign_cpu_cores(before, probe.snapshot())
    if background > 0.6:
        pytest.skip(f"the machine is too busy to show a quiet window ({background:.2f} cores elsewhere)")
    threshold = min(1.0, background + 0.35)
    said: list[str] = []

    def say(text: str) -> None:  # the hog stops as soon as the guard says it waits
        said.append(text)
        procs.stop()

    with hog(3) as procs:
        guard = WindowGuard(ContentionPolicy(mode="wait", cores=threshold, quiet_s=1.0, max_wait_s=20, redos=2),
                            say=say)
        reps = _bench(guard, repeats=1)
    assert said and said[0].startswith("waiting for a quiet machine") and "farm-hog" in said[0], said
    assert guard.redone >= 1
    (rep,) = reps
    assert not rep.contention["contended"], (rep.contention, said)
    assert rep.contention["foreign_cpu_cores"] <= threshold


@pytest.mark.slow
def test_farm_run_stores_a_flagged_row_and_refuse_fails_the_job(farm_env: dict[str, str]) -> None:
    """Through `farm run` (the worker's whole path): a busy loop beside the benchmark gives contended rows under
    flag, with the foreign cores and the reason in noise, and under refuse a run that fails naming contention and
    stores nothing."""
    import json

    from tests.conftest import run_farm

    args = ["run", "--variant", "baseline", "--repeats", "2", "--limit", "16", "--format", "json"]
    with hog(1):  # one busy core is over the 0.3 threshold; more only slowed both runs (203 s with 3 in CI)
        flagged = run_farm(args, {**farm_env, "FARM_CONTENTION": "flag", "FARM_CONTENTION_CORES": "0.3"})
        refused = run_farm(args, {**farm_env, "FARM_CONTENTION": "refuse", "FARM_CONTENTION_CORES": "0.3"})
    assert flagged.returncode == 0, flagged.stderr
    rows = json.loads(flagged.stdout)
    assert rows and all(r["contended"] and r["foreign_cpu_cores"] > 0.3 for r in rows), rows
    assert all(r["noise"].startswith("contended: ") for r in rows)
    assert refused.returncode != 0
    assert "contended" in refused.stderr and "FARM_CONTENTION=refuse" in refused.stderr, refused.stderr
    # `farm run` leaves nothing of a job that could not run (its failure is the one-line error above): only the
    # flagged run's job and rows are in the store
    jobs = json.loads(run_farm(["status", "--format", "json"], farm_env).stdout)["jobs"]
    assert [j["state"] for j in jobs] == ["done"], jobs
    stored = json.loads(run_farm(["results", "--format", "json"], farm_env).stdout)
    assert len(stored) == len(rows), stored


def test_fake_nvml_another_process_on_the_gpu_makes_the_window_contended(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML patched (this machine has no GPU): our own pid on the device is not foreign, another one is."""
    import types

    from worker.contention import gpu_foreign

    me, other = os.getpid(), 999_999
    both = [types.SimpleNamespace(pid=me), types.SimpleNamespace(pid=other)]
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetComputeRunningProcesses=lambda h: both,
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [],
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert gpu_foreign(0, {me}) == {"processes": [other], "utilization_pct": 87.0}
    guard = WindowGuard(ContentionPolicy(mode="flag", cores=64), gpu_index=0)
    columns = guard.judge(guard.begin())
    assert columns is not None and columns["contended"] and columns["foreign_gpu"]["processes"] == [other]
    assert "other processes on the GPU: 999999" in columns["contention_note"]
    fake.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=me)]
    quiet = guard.judge(guard.begin())
    assert quiet is not None and not quiet["contended"] and quiet["foreign_gpu"]["processes"] == []


@pytest.mark.slow
def test_calibrate_at_a_chosen_window_stores_that_window(farm_env: dict[str, str]) -> None:
    """`farm calibrate --min-window S`: each pass is repeated inside its window until the window lasts S seconds,
    and the stored noise floor says at which window it was measured (a floor describes that window only)."""
    import json

    from tests.conftest import run_farm

    env = {**farm_env, "FARM_CONTENTION": "flag"}
    out = run_farm(["calibrate", "--here", "--pairs", "3", "--limit", "32", "--min-window", "0.4", "--format",
                    "json"], env)
    assert out.returncode == 0, out.stderr
    (floor,) = json.loads(out.stdout)
    assert floor["pairs"] == 3 and floor["window_s"] >= 0.4
    assert floor["time_cv"] >= 0 and floor["time_resolvable_fraction"] > 0
    bad = run_farm(["calibrate", "--here", "--min-window", "-1"], env)
    assert bad.returncode != 0 and "--min-window" in bad.stderr
