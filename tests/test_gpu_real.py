"""On a real NVIDIA GPU only (skipped elsewhere): the NVML meter against the real driver, and a CUDA job.

These run on a GPU machine (`pytest tests/test_gpu_real.py`); CI has no GPU, so there they are skipped. The
fake-NVML tests in test_meters.py cover the same code everywhere.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("pynvml")

from worker.devices import open_device  # noqa: E402
from worker.meters.nvml import NvmlMeter  # noqa: E402


def _busy(seconds_of_matmuls: int) -> None:
    a = torch.randn(8192, 8192, device="cuda")
    for _ in range(seconds_of_matmuls):
        a = (a @ a).clamp_(-1, 1)


def test_real_nvml_counter_sees_load_above_idle() -> None:
    """The energy counter (Volta and newer) gives joules for a window; a loaded GPU draws more than an idle one,
    and neither draws more than its power limit allows (plus 10 % for the counter's granularity)."""
    device = open_device("cuda:0")
    meter = NvmlMeter([0], sync=device.synchronize)
    try:
        assert meter.name == "measured:nvml-counter"
        limit_w = meter.gpus[0].power_limit_w
        assert limit_w is not None and 50 < limit_w < 2000
        import time

        with meter.window() as idle:
            time.sleep(1.0)
        with meter.window() as busy:
            _busy(60)
        idle_w = idle.measurement.gpu_energy_j / idle.measurement.duration_s
        busy_w = busy.measurement.gpu_energy_j / busy.measurement.duration_s
        print(f"{meter.gpus[0].name}: idle {idle_w:.0f} W, busy {busy_w:.0f} W, limit {limit_w:.0f} W, "
              f"busy window {busy.measurement.duration_s:.2f} s")
        assert 0 < idle_w < busy_w <= limit_w * 1.1
    finally:
        meter.close()


def test_real_cuda_device_handle() -> None:
    """The CUDA device handle names the GPU and reads its temperature through NVML."""
    device = open_device("cuda:0")
    assert device.gpu_name and "NVIDIA" in device.gpu_name.upper()
    temps = device.temperatures_c()
    assert temps.get("gpu_temp_c") is not None and 10 < temps["gpu_temp_c"] < 100
