"""AMD GPUs through AMD SMI, on a FAKE amdsmi module (this machine has no GPU): the meter's counter and polling
paths, the vendor choosing the meter and the NUMA lookup, and a ROCm torch never reaching NVML."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.fakes import FakePowercap, fake_amdsmi
from shared.devices import Device
from shared.settings import Settings
from worker.devices.base import DeviceHandle
from worker.meters import amd, nvml
from worker.meters.amd import AmdSmiMeter, amd_index, gpu_temperature_c
from worker.meters.base import MeterError
from worker.meters.select import build_meter


class FakeRocmGpu(DeviceHandle):
    """A handle that claims an AMD `cuda:0`."""

    vendor = "amd"

    def synchronize(self) -> None:
        return None


def test_fake_amdsmi_counter_path_reads_joules_and_the_gpus_facts() -> None:
    synced: list[str] = []
    smi = fake_amdsmi(has_counter=True, power_w=300.0)
    meter = AmdSmiMeter([0], sync=lambda: synced.append("sync"), smi=smi)
    assert meter.name == "measured:amdsmi-counter"
    assert meter.gpus[0].name == "AMD Instinct MI250X" and meter.gpus[0].power_limit_w == 500.0
    with meter.window() as w:
        time.sleep(0.2)
    m = w.measurement
    assert synced == ["sync", "sync"]
    assert m.gpu_energy_j == pytest.approx(300.0 * m.duration_s, rel=0.1)
    assert m.domains == ("gpu-0",) and m.cpu_energy_j is None
    assert meter.describe() == {"gpu_driver": "6.8.5", "gpu_power_limit_w": 500.0}
    assert smi.calls.get("power", 0) == 0  # no polling where the accumulator exists
    meter.close()
    assert smi.calls["shutdown"] == 1


def test_fake_amdsmi_rocm_6_0_names_the_accumulator_power() -> None:
    meter = AmdSmiMeter([0], smi=fake_amdsmi(has_counter=True, power_w=100.0, legacy_key=True))
    with meter.window() as w:
        time.sleep(0.15)
    assert w.measurement.gpu_energy_j == pytest.approx(100.0 * w.measurement.duration_s, rel=0.15)


def test_fake_amdsmi_without_a_counter_polls_socket_power_at_10hz_or_more() -> None:
    smi = fake_amdsmi(has_counter=False, power_w=150.0, names=("Radeon Pro W6800", "Radeon Pro W6800"),
                      power_key="average_socket_power")
    meter = AmdSmiMeter([0, 1], smi=smi, poll_hz=20)
    assert meter.name == "measured:amdsmi-polling"
    with meter.window() as w:
        time.sleep(0.5)
    m = w.measurement
    assert smi.calls["power"] / 2 >= 0.5 * 10
    assert m.energy_by_domain_j["gpu-1"] == pytest.approx(150.0 * m.duration_s, rel=0.05)
    assert m.domains == ("gpu-0", "gpu-1")


def test_fake_amdsmi_power_that_reads_na_everywhere_is_an_error_not_0_joules() -> None:
    meter = AmdSmiMeter([0], smi=fake_amdsmi(has_counter=False, power_key="no_such_field"))
    with pytest.raises(MeterError, match="no socket power"), meter.window():
        pass


def test_fake_amdsmi_gpu_that_is_not_there_is_a_meter_error() -> None:
    smi = fake_amdsmi(has_counter=True)
    with pytest.raises(MeterError, match="sees 1 GPUs"):
        AmdSmiMeter([2], smi=smi)
    assert smi.calls["shutdown"] == 1  # what it opened is closed again


def test_fake_amdsmi_is_chosen_for_an_amd_device_and_nvml_never_is(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_nvml() -> None:
        raise AssertionError("a ROCm GPU reached NVML")

    monkeypatch.setattr(nvml, "_load_pynvml", no_nvml)
    monkeypatch.setattr(amd, "load_amdsmi", lambda: fake_amdsmi(has_counter=True, power_w=200.0))
    FakePowercap(tmp_path)
    meter = build_meter(FakeRocmGpu(Device.parse("cuda:0")), Settings(powercap_root=str(tmp_path)))
    assert meter.name == "measured:amdsmi-counter+measured:rapl"
    with meter.window() as w:
        time.sleep(0.12)
    assert w.measurement.domains == ("gpu-0", "package-0")
    assert meter.describe()["gpu_driver"] == "6.8.5"


def test_fake_amdsmi_a_rocm_torch_opens_cuda_as_an_amd_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's HIP build calls an AMD GPU `cuda:0`: the opened device says amd (from torch.version.hip), its
    meter is AMD SMI and its temperature comes from AMD SMI, so the job never touches NVML."""
    import torch

    from worker.devices import open_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    monkeypatch.setattr(nvml, "_load_pynvml", lambda: (_ for _ in ()).throw(AssertionError("NVML on ROCm")))
    smi = fake_amdsmi(has_counter=False, temps_c={"HOTSPOT": 61.0})
    monkeypatch.setattr(amd, "load_amdsmi", lambda: smi)
    device = open_device("cuda:0")
    assert device.vendor == "amd"
    FakePowercap(tmp_path)
    assert build_meter(device, Settings(powercap_root=str(tmp_path))).name == "measured:amdsmi-polling+measured:rapl"
    assert device.temperatures_c()["gpu_temp_c"] == 61.0  # no edge sensor (MI300): the hotspot's
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert open_device("cuda:0").vendor == "nvidia"


def test_fake_amdsmi_temperature_is_none_where_no_sensor_reads() -> None:
    assert gpu_temperature_c(0, fake_amdsmi(has_counter=True)) == 45.0
    assert gpu_temperature_c(0, fake_amdsmi(has_counter=True, temps_c={})) is None


def test_fake_amdsmi_visible_devices_map_torch_ordinals(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in amd.VISIBLE_ENV:
        monkeypatch.delenv(var, raising=False)
    assert amd_index(1) == 1
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "2,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # HIP's list wins on ROCm
    assert amd_index(1) == 3


def test_fake_amdsmi_and_sysfs_put_an_amd_gpus_worker_on_its_numa_node(tmp_path: Path) -> None:
    """The NUMA lookup follows the vendor: an AMD cuda:0's PCI address comes from AMD SMI, not NVML."""
    from worker.devices.numa import allowed_cpus, device_cpus

    allowed = allowed_cpus()
    mine = sorted(allowed)
    half = set(mine[len(mine) // 2:] or mine)
    node = tmp_path / "devices/system/node/node1"
    node.mkdir(parents=True)
    (node / "cpulist").write_text(",".join(map(str, sorted(half))))
    gpu = tmp_path / "bus/pci/devices/0000:c1:00.0"
    gpu.mkdir(parents=True)
    (gpu / "numa_node").write_text("1\n")
    smi = fake_amdsmi(has_counter=True, bdfs=("0000:C1:00.0",))
    assert device_cpus(Device.parse("cuda:0"), "amd", sysfs=tmp_path, smi=smi) == half
