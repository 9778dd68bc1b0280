"""Time spent inside meter calls as a fraction of a metered window (goal: <= 0.5 % of a 10 s window).

Each meter measures one window of `--window-s` seconds while the main thread runs a torch matmul loop.
Real sources are used where this machine has them; otherwise RAPL reads a fake powercap tree and NVML a
fake pynvml module (both from harness/fakes.py), and the output says so: those rows time farm's own code
path (polling thread, parsing, integration), not the kernel's or the driver's.

    python scripts/bench_meter_overhead.py [--window-s 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.settings import Settings  # noqa: E402
from worker.meters.base import Meter, MeterError  # noqa: E402
from worker.meters.estimate import CpuTimeEstimate  # noqa: E402
from worker.meters.nvml import NvmlMeter  # noqa: E402
from worker.meters.rapl import RaplMeter  # noqa: E402


class Timed(Meter):
    """Wraps a meter and adds the time spent in its begin/end calls to its own poller time."""

    def __init__(self, inner: Meter) -> None:
        self.inner, self.name, self.call_s = inner, inner.name, 0.0

    def _begin(self) -> object:
        t0 = time.perf_counter()
        state = self.inner._begin()
        self.call_s += time.perf_counter() - t0
        return state

    def _end(self, state: object, duration_s: float):  # noqa: ANN202
        t0 = time.perf_counter()
        m = self.inner._end(state, duration_s)
        self.call_s += time.perf_counter() - t0
        return m

    @property
    def overhead_s(self) -> float:
        # Poller time is counted by the inner meter; begin/end time may be too, so take the larger.
        return max(self.call_s, self.inner.overhead_s)


def workload(window_s: float) -> None:
    a = torch.randn(256, 256)
    end = time.perf_counter() + window_s
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)


def meters(settings: Settings, tmp: Path) -> list[tuple[str, Meter]]:
    out: list[tuple[str, Meter]] = [("estimated:cpu-time (real)", CpuTimeEstimate(settings.cpu_watts_per_core))]
    try:
        out.append(("measured:rapl (real sysfs)", RaplMeter(settings.powercap_root)))
    except MeterError as exc:
        from harness.fakes import FakePowercap

        print(f"no real RAPL here ({exc}); timing a FAKE powercap tree", file=sys.stderr)
        FakePowercap(tmp / "powercap", sockets=2, dram=True)
        out.append(("measured:rapl (FAKE tree, 1 s poll)", RaplMeter(tmp / "powercap")))
        out.append(("measured:rapl (FAKE tree, 10 ms poll)", RaplMeter(tmp / "powercap", poll_interval_s=0.01)))
    try:
        out.append(("measured:nvml (real)", NvmlMeter([0])))
    except MeterError as exc:
        from harness.fakes import fake_pynvml

        print(f"no real NVML here ({exc}); timing a FAKE pynvml", file=sys.stderr)
        out.append(("measured:nvml-polling (FAKE pynvml, 20 Hz)", NvmlMeter([0], nvml=fake_pynvml(has_counter=False))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, meter in meters(Settings.from_env(), Path(tmp)):
            timed = Timed(meter)
            with timed.window() as w:
                workload(args.window_s)
            frac = timed.overhead_s / w.measurement.duration_s
            rows.append((label, w.measurement.duration_s, timed.overhead_s, frac))
            meter.close()
    print(f"{'meter':45s} {'window s':>9s} {'in meter s':>11s} {'fraction':>9s}")
    for label, dur, over, frac in rows:
        flag = "ok" if frac <= 0.005 else "OVER 0.5 %"
        print(f"{label:45s} {dur:9.2f} {over:11.6f} {frac:9.4%}  {flag}")


if __name__ == "__main__":
    main()
