"""Meters: RAPL against fake powercap trees, NVML through a fake pynvml, the estimate for real."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.fakes import FakePowercap, fake_pynvml
from shared.settings import Settings
from worker.bench import measure_idle
from worker.conditions import cpu_governor, cpu_temperature_c
from worker.devices import open_device
from worker.meters.base import MeterError
from worker.meters.combined import CombinedMeter
from worker.meters.estimate import CpuTimeEstimate
from worker.meters.nvml import NvmlMeter, integrate_power
from worker.meters.rapl import RaplAccumulator, RaplMeter, discover_domains, poll_interval_for
from worker.meters.select import build_meter


def test_rapl_fake_tree_sums_every_socket(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, sockets=2)
    meter = RaplMeter(tmp_path)
    with meter.window() as w:
        tree.set("intel-rapl:0", 3_000_000)
        tree.set("intel-rapl:1", 5_000_000)
    m = w.measurement
    assert m.cpu_energy_j == pytest.approx(8.0)
    assert m.dram_energy_j is None and m.gpu_energy_j is None
    assert m.source == "measured:rapl"
    assert m.energy_by_domain_j == {"package-0": pytest.approx(3.0), "package-1": pytest.approx(5.0)}


def test_rapl_fake_tree_reports_dram_separately_and_skips_core_subzones(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, sockets=2, dram=True)
    assert [d.label for d in discover_domains(tmp_path)] == ["package-0", "package-1", "dram-0", "dram-1"]
    with RaplMeter(tmp_path).window() as w:
        tree.set("intel-rapl:0", 2_000_000)
        tree.set("intel-rapl:0:1", 500_000)
        tree.set("intel-rapl:1", 2_000_000)
        tree.set("intel-rapl:1:1", 250_000)
        tree.set("intel-rapl:0:0", 9_999_999)  # core is part of package: not added
    assert w.measurement.cpu_energy_j == pytest.approx(4.0)
    assert w.measurement.dram_energy_j == pytest.approx(0.75)
    assert w.measurement.total_energy_j == pytest.approx(4.75)


def test_rapl_counts_one_wrap_in_a_window(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, max_range_uj=1_000_000)
    tree.set("intel-rapl:0", 900_000)
    with RaplMeter(tmp_path, poll_interval_s=60).window() as w:
        tree.set("intel-rapl:0", 200_000)  # 0.1 J to the wrap, then 0.2 J
    assert w.measurement.cpu_energy_j == pytest.approx(0.3)


def test_rapl_counts_two_wraps_in_one_window(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, max_range_uj=1_000_000)
    tree.set("intel-rapl:0", 900_000)
    acc = RaplAccumulator(discover_domains(tmp_path))
    for reading in (500_000, 100_000, 300_000):  # polls see 2 wraps: +600k, +600k, +200k
        tree.set("intel-rapl:0", reading)
        acc.sample()
    assert acc.wraps == [2]
    assert acc.joules_by_kind()["package"] == pytest.approx(1.4)


def test_rapl_background_poller_catches_wraps_a_single_difference_would_miss(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, max_range_uj=1_000_000)
    meter = RaplMeter(tmp_path, poll_interval_s=0.005)
    with meter.window() as w:
        for step in range(1, 11):  # 10 x 0.3 J = 3 J: wraps 3 times
            tree.set("intel-rapl:0", step * 300_000)
            time.sleep(0.05)
    assert w.measurement.cpu_energy_j == pytest.approx(3.0)


def test_rapl_poll_interval_sees_every_wrap() -> None:
    from worker.meters.rapl import RaplDomain

    domains = [RaplDomain("p", "package", Path("/"), 262_143_328_850)]
    # 262 kJ at an assumed 1 kW ceiling wraps in 262 s: poll at least every second.
    assert poll_interval_for(domains) == 1.0
    small = [RaplDomain("p", "package", Path("/"), 10_000_000)]  # 10 J wraps in 10 ms at 1 kW
    assert poll_interval_for(small) == pytest.approx(10.0 / 1000 / 4)


def test_rapl_permission_denied_is_a_clear_error_not_zero(tmp_path: Path) -> None:
    FakePowercap(tmp_path)
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    counter.chmod(0o000)
    script = (
        "from worker.meters.rapl import RaplMeter\n"
        "from worker.meters.base import MeterError\n"
        f"try:\n    RaplMeter({str(tmp_path)!r})\nexcept MeterError as e:\n    print('ERR', e)\n"
    )
    prefix: list[str] = []
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that bypass file permissions
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    proc = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    out = proc.stdout + proc.stderr
    assert "ERR" in out and "permission denied" in out and "energy_uj" in out, out


def test_missing_rapl_falls_back_to_a_labelled_estimate(tmp_path: Path) -> None:
    settings = Settings(powercap_root=str(tmp_path / "none"), cpu_watts_per_core=10.0)
    meter = build_meter(open_device("cpu"), settings)
    assert meter.name == "estimated:cpu-time"
    with meter.window() as w:
        sum(i * i for i in range(200_000))
    assert w.measurement.is_estimate and w.measurement.cpu_energy_j > 0
    assert any("RAPL unavailable" in note for note in w.measurement.warnings)


def test_present_rapl_is_chosen_for_cpu_jobs(tmp_path: Path) -> None:
    FakePowercap(tmp_path)
    assert build_meter(open_device("cpu"), Settings(powercap_root=str(tmp_path))).name == "measured:rapl"


def test_short_rapl_window_gets_a_warning(tmp_path: Path) -> None:
    FakePowercap(tmp_path)
    with RaplMeter(tmp_path).window() as w:
        pass
    assert any("shorter than" in x for x in w.measurement.warnings)


def test_fake_nvml_counter_path(tmp_path: Path) -> None:
    synced: list[str] = []
    nvml = fake_pynvml(has_counter=True, power_w=200.0)
    meter = NvmlMeter([0], sync=lambda: synced.append("sync"), nvml=nvml)
    assert meter.name == "measured:nvml-counter"
    assert meter.gpus[0].name == "NVIDIA H100" and meter.gpus[0].power_limit_w == 350.0
    assert meter.gpus[0].driver == "550.54.15"
    with meter.window() as w:
        time.sleep(0.2)
    m = w.measurement
    assert synced == ["sync", "sync"]  # both edges
    assert m.gpu_energy_j == pytest.approx(200.0 * m.duration_s, rel=0.1)
    assert m.cpu_energy_j is None and m.domains == ("gpu-0",)
    assert meter.describe() == {"gpu_driver": "550.54.15", "gpu_power_limit_w": 350.0}
    assert nvml.calls.get("power", 0) == 0  # no polling when the counter exists


def test_fake_nvml_window_duration_covers_work_still_queued_at_its_end() -> None:
    """GPU kernels run after the Python body returns: the window waits for them (sync) before taking its duration,
    so watts = joules / seconds stay at the GPU's real power. Seen on a real H200: without this, a 60-matmul
    window read 4,784 W against a 700 W limit."""
    nvml = fake_pynvml(has_counter=True, power_w=200.0)
    meter = NvmlMeter([0], sync=lambda: time.sleep(0.3), nvml=nvml)  # 0.3 s of queued kernels at the end
    with meter.window() as w:
        pass  # the body only queues work
    m = w.measurement
    assert m.duration_s >= 0.3
    assert m.gpu_energy_j / m.duration_s == pytest.approx(200.0, rel=0.15)


def test_fake_nvml_polling_path_integrates_power_at_10hz_or_more(tmp_path: Path) -> None:
    nvml = fake_pynvml(has_counter=False, power_w=80.0, names=("Quadro P2000", "Quadro P2000"))
    meter = NvmlMeter([0, 1], nvml=nvml, poll_hz=20)
    assert meter.name == "measured:nvml-polling"
    with meter.window() as w:
        time.sleep(0.5)
    m = w.measurement
    assert nvml.calls["power"] / 2 >= 0.5 * 10  # samples per GPU over 0.5 s
    assert m.energy_by_domain_j["gpu-0"] == pytest.approx(80.0 * m.duration_s, rel=0.05)
    assert m.gpu_energy_j == pytest.approx(2 * 80.0 * m.duration_s, rel=0.05)
    assert m.domains == ("gpu-0", "gpu-1")


def test_fake_nvml_errors_become_meter_errors() -> None:
    with pytest.raises(MeterError, match="nvmlDeviceGetHandleByIndex|<lambda>"):
        NvmlMeter([3], nvml=fake_pynvml(has_counter=True))


def test_fake_nvml_combined_with_rapl_labels_both_sources(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path)
    meter = CombinedMeter([NvmlMeter([0], nvml=fake_pynvml(has_counter=True, power_w=50)), RaplMeter(tmp_path)])
    with meter.window() as w:
        tree.set("intel-rapl:0", 1_000_000)
        time.sleep(0.15)
    m = w.measurement
    assert m.source == "measured:nvml-counter+measured:rapl"
    assert m.cpu_energy_j == pytest.approx(1.0) and m.gpu_energy_j > 0
    assert m.total_energy_j == pytest.approx(m.cpu_energy_j + m.gpu_energy_j)


def test_integrate_power_is_trapezoidal() -> None:
    samples = [(0.0, [0.0]), (1.0, [10.0]), (3.0, [10.0])]
    assert integrate_power(samples) == [pytest.approx(5.0 + 20.0)]


def test_idle_baseline_with_the_real_estimate_is_near_zero_power() -> None:
    idle = measure_idle(CpuTimeEstimate(watts_per_core=10.0), 0.3)
    assert idle is not None and idle.duration_s >= 0.3
    assert idle.total_energy_j / idle.duration_s < 1.0  # a sleeping process burns almost no CPU time
    assert measure_idle(CpuTimeEstimate(10.0), 0) is None


def test_conditions_read_sysfs_or_report_none(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone3"
    zone.mkdir()
    (zone / "type").write_text("x86_pkg_temp\n")
    (zone / "temp").write_text("47500\n")
    assert cpu_temperature_c(tmp_path) == 47.5
    assert cpu_temperature_c(tmp_path / "absent") is None
    gov = tmp_path / "gov"
    gov.write_text("performance\n")
    assert cpu_governor(gov) == "performance" and cpu_governor(tmp_path / "x") is None


# Issue "Count each joule once": fake trees shaped like real machines' powercap layouts.
TWO_SOCKET_SERVER = {"intel-rapl:0": "package-0", "intel-rapl:0:0": "dram",
                     "intel-rapl:1": "package-1", "intel-rapl:1:0": "dram"}
INTEL_CLIENT = {"intel-rapl:0": "package-0", "intel-rapl:0:0": "core", "intel-rapl:0:1": "uncore",
                "intel-rapl:0:2": "dram", "intel-rapl:1": "psys", "intel-rapl-mmio:0": "package-0"}
AMD_EPYC = {"intel-rapl:0": "package-0", "intel-rapl:1": "package-1"}


@pytest.mark.parametrize(
    ("layout", "counters", "expected_j", "domains"),
    [
        (TWO_SOCKET_SERVER, {"intel-rapl:0": 30, "intel-rapl:0:0": 5, "intel-rapl:1": 20, "intel-rapl:1:0": 4},
         {"cpu": 50, "dram": 9}, "package-0+package-1+dram-0+dram-1"),
        # psys already holds the package and more; core and uncore are inside the package; MMIO copies it.
        (INTEL_CLIENT, {"intel-rapl:0": 12, "intel-rapl:0:0": 8, "intel-rapl:0:1": 1, "intel-rapl:0:2": 2,
                        "intel-rapl:1": 25, "intel-rapl-mmio:0": 12},
         {"cpu": 12, "dram": 2}, "package-0+dram-0"),
        (AMD_EPYC, {"intel-rapl:0": 70, "intel-rapl:1": 65}, {"cpu": 135, "dram": None}, "package-0+package-1"),
    ],
    ids=["two-socket-server", "intel-client-psys-mmio", "amd-epyc"],
)
def test_rapl_counts_each_joule_once_on_real_layouts(tmp_path: Path, layout: dict[str, str],
                                                     counters: dict[str, int], expected_j: dict[str, float | None],
                                                     domains: str) -> None:
    tree = FakePowercap.layout(tmp_path, layout, max_range_uj=40_000_000)  # 40 J: some counters wrap below
    for zone in counters:
        tree.set(zone, 35_000_000)
    with RaplMeter(tmp_path, poll_interval_s=0.005).window() as w:
        for step in range(1, 11):  # each counter climbs by its joules in 10 steps, wrapping past 40 J
            for zone, joules in counters.items():
                tree.set(zone, 35_000_000 + step * joules * 100_000)
            time.sleep(0.02)
    m = w.measurement
    assert m.cpu_energy_j == pytest.approx(expected_j["cpu"])
    assert m.dram_energy_j == (None if expected_j["dram"] is None else pytest.approx(expected_j["dram"]))
    assert "+".join(m.domains) == domains


def test_psys_is_counted_only_when_asked_and_then_alone(tmp_path: Path) -> None:
    tree = FakePowercap.layout(tmp_path, INTEL_CLIENT)
    with RaplMeter(tmp_path, mode="psys").window() as w:
        tree.set("intel-rapl:1", 25_000_000)
        tree.set("intel-rapl:0", 12_000_000)
        tree.set("intel-rapl:0:2", 2_000_000)
    assert w.measurement.cpu_energy_j == pytest.approx(25.0) and w.measurement.dram_energy_j is None
    assert w.measurement.domains == ("psys",)
    epyc = tmp_path / "epyc"
    epyc.mkdir()
    FakePowercap.layout(epyc, AMD_EPYC)
    with pytest.raises(MeterError, match="no psys domain"):
        RaplMeter(epyc, mode="psys")


def test_an_mmio_copy_counts_only_where_no_msr_zone_exists(tmp_path: Path) -> None:
    FakePowercap.layout(tmp_path, {"intel-rapl-mmio:0": "package-0", "intel-rapl:1": "psys"})
    assert [(d.label, d.path.name) for d in discover_domains(tmp_path)] == [("package-0", "intel-rapl-mmio:0")]


def test_result_rows_say_which_domains_were_summed(tmp_path: Path, artifacts_dir: Path,
                                                  builtin_model: object) -> None:
    from shared.specs import BenchSpec, JobSpec, parse_variant
    from worker.jobs import execute

    FakePowercap.layout(tmp_path, TWO_SOCKET_SERVER)
    settings = Settings(powercap_root=str(tmp_path), idle_s=0, artifacts=str(artifacts_dir),
                        contention="flag")  # beside other test processes: flag, never wait for quiet
    spec = JobSpec(variant=parse_variant("baseline"), bench=BenchSpec(repeats=1, limit=16, warmup_batches=1))
    (row,) = execute(spec, settings, "cpu")
    assert row["energy_domains"] == "package-0+package-1+dram-0+dram-1"
    assert row["energy_source"] == "measured:rapl"


def test_combined_meter_sums_by_domain_and_refuses_a_domain_counted_twice(tmp_path: Path) -> None:
    tree = FakePowercap(tmp_path, sockets=2, dram=True)
    with CombinedMeter([RaplMeter(tmp_path), CpuTimeEstimate(10.0)]).window() as w:
        tree.set("intel-rapl:0", 1_000_000)
        tree.set("intel-rapl:1:1", 500_000)
    m = w.measurement
    assert m.domains == ("package-0", "package-1", "dram-0", "dram-1", "process-cpu-time")
    assert m.dram_energy_j == pytest.approx(0.5)
    assert m.cpu_energy_j == pytest.approx(1.0 + m.energy_by_domain_j["process-cpu-time"])
    assert m.is_estimate  # any estimated part makes the whole an estimate
    twice = CombinedMeter([RaplMeter(tmp_path), RaplMeter(tmp_path)])
    with pytest.raises(MeterError, match="count twice"), twice.window():
        pass


def test_null_meter_times_but_never_reads_zero_joules() -> None:
    from worker.meters.null import NullMeter

    with NullMeter().window() as w:
        time.sleep(0.01)
    assert w.measurement.duration_s >= 0.01 and w.measurement.domains == ()
    assert w.measurement.cpu_energy_j is None
    with pytest.raises(MeterError, match="measured nothing"):
        _ = w.measurement.total_energy_j


def test_an_unknown_domain_label_is_refused() -> None:
    from worker.meters.base import EnergyMeasurement

    with pytest.raises(MeterError, match="unknown energy domain"):
        EnergyMeasurement(duration_s=1.0, source="measured:x", energy_by_domain_j={"uncore-0": 1.0})


def test_a_poller_stops_on_a_meter_error_and_raises_it_at_stop() -> None:
    from worker.meters.poller import Poller

    calls: list[int] = []

    def sample() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise MeterError("counter gone")

    poller = Poller(sample, 0.005, "test-poller").start()
    time.sleep(0.1)
    with pytest.raises(MeterError, match="counter gone"):
        poller.stop()
    assert len(calls) == 3  # it stopped polling at the error


def test_rapl_that_fails_mid_window_raises_instead_of_returning_part(tmp_path: Path) -> None:
    FakePowercap(tmp_path)
    meter = RaplMeter(tmp_path, poll_interval_s=0.005)
    with pytest.raises(MeterError), meter.window():
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage")
        time.sleep(0.05)


def test_fake_nvml_is_chosen_for_a_cuda_device_beside_the_cpu_meter(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A patched NVML module and a device handle that claims cuda:0 (this machine has no GPU)."""
    from shared.devices import Device
    from worker.devices.base import DeviceHandle
    from worker.meters import nvml

    class FakeCuda(DeviceHandle):
        vendor = "nvidia"

        def synchronize(self) -> None:
            return None

    fake = fake_pynvml(has_counter=True, power_w=100.0)
    monkeypatch.setattr(nvml, "_load_pynvml", lambda: fake)
    FakePowercap(tmp_path)
    meter = build_meter(FakeCuda(Device.parse("cuda:0")), Settings(powercap_root=str(tmp_path)))
    assert meter.name == "measured:nvml-counter+measured:rapl"
    with meter.window() as w:
        time.sleep(0.12)
    assert w.measurement.domains == ("gpu-0", "package-0")
    assert meter.describe()["gpu_driver"] == "550.54.15"


def test_the_estimate_note_names_what_was_measured_beside_the_estimate() -> None:
    """A GPU row on a host without RAPL: GPU joules are measured, only the CPU's are estimated (the H200 run once
    printed "no RAPL/NVML here" beside a real NVML reading)."""
    from shared.energy import estimate_note

    assert estimate_note(["measured:nvml-counter", "measured:rapl"]) is None
    note = estimate_note(["measured:nvml-counter+estimated:cpu-time"])
    assert note is not None and "CPU energy is ESTIMATED" in note and "measured: nvml-counter" in note
    cpu_only = estimate_note(["estimated:cpu-time"])
    assert cpu_only is not None and "measured:" not in cpu_only


def test_fake_powercap_unreadable_counter_names_file_reason_and_fix(tmp_path: Path) -> None:
    """RAPL present but energy_uj unreadable (root-only since Linux 5.10): the worker's start line names the file,
    the reason and the fix, and the CPU meter is the labelled estimate carrying that reason. The permission error
    is real: the check runs without the capabilities that let root read any file."""
    FakePowercap(tmp_path)
    counter = tmp_path / "intel-rapl:0" / "energy_uj"
    counter.chmod(0o000)
    script = (
        "from shared.settings import Settings\n"
        "from worker.devices import open_device\n"
        "from worker.meters.select import build_meter, rapl_access_problem\n"
        f"s = Settings(powercap_root={str(tmp_path)!r})\n"
        "print('LINE', rapl_access_problem(s))\n"
        "m = build_meter(open_device('cpu'), s)\n"
        "with m.window() as w:\n    sum(i for i in range(10000))\n"
        "print('SOURCE', w.measurement.source, w.measurement.is_estimate)\n"
        "print('WARN', ' | '.join(w.measurement.warnings))\n"
    )
    prefix: list[str] = []
    if os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    proc = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    lines = {ln.split(" ", 1)[0]: ln for ln in proc.stdout.splitlines() if " " in ln}
    assert "LINE" in lines, proc.stdout + proc.stderr
    line = lines["LINE"]
    assert str(counter) in line and "root only since Linux 5.10" in line, line
    assert "udev" in line and "chmod" in line and "CAP_DAC_READ_SEARCH" in line, line
    assert lines["SOURCE"] == "SOURCE estimated:cpu-time True", lines["SOURCE"]
    assert str(counter) in lines["WARN"] and "root only since Linux 5.10" in lines["WARN"], lines["WARN"]


def test_fake_powercap_readable_tree_gives_no_start_line(tmp_path: Path) -> None:
    from worker.meters.select import rapl_access_problem

    FakePowercap(tmp_path)
    assert rapl_access_problem(Settings(powercap_root=str(tmp_path))) is None
    assert rapl_access_problem(Settings(powercap_root=str(tmp_path / "none"))) is None  # no RAPL: nothing to fix
