"""The measurement protocol: warm-up on dummy input, then timed, metered passes over the test split."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import torch
from tqdm.auto import tqdm

from shared.db.types import utcnow
from shared.specs import BenchSpec
from worker.contention import WindowGuard
from worker.devices.base import DeviceHandle
from worker.latency import LatencyRecorder, LatencySummary
from worker.memory import MemoryPeak, peak_memory
from worker.meters.base import EnergyMeasurement, Meter
from worker.runtimes.base import Runner
from worker.workloads.types import ImageSet


@dataclass(frozen=True)
class RepeatMeasurement:
    """One pass over the benchmark data. Accuracies are fractions; None without labels."""

    repeat_index: int
    started_at: datetime
    samples: int
    top1: float | None
    top5: float | None
    duration_s: float
    energy: EnergyMeasurement
    conditions_start: dict[str, Any] = field(default_factory=dict)
    conditions_end: dict[str, Any] = field(default_factory=dict)
    warmup_batches: int = 0  # batches the warm-up ran before this benchmark's first repeat
    passes: int = 1  # passes over the data inside the window (accuracy comes from the first)
    latency: LatencySummary | None = None  # seconds per batch, every batch of the window timed (worker/latency.py)
    memory: MemoryPeak | None = None  # peak memory over the window (worker/memory.py)
    cold_latency_s: float | None = None  # the first batch after loading (warm-up's first), seconds
    # Contention columns from worker/contention.py (foreign_cpu_cores, foreign_gpu, contended, cooldown_s, ...)
    contention: dict[str, Any] = field(default_factory=dict)

    @property
    def time_per_sample_s(self) -> float:
        return self.duration_s / self.samples


def coefficient_of_variation(values: list[float]) -> float:
    if len(values) < 2:
        return float("inf")
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else float("inf")


@torch.inference_mode()
def run_benchmark(
    runner: Runner,
    data: ImageSet,
    spec: BenchSpec,
    device: DeviceHandle,
    meter: Meter,
    *,
    on_repeat: Callable[[RepeatMeasurement], None] | None = None,
    probe: Callable[[], dict[str, Any]] | None = None,
    checkpoint: Callable[[], None] | None = None,
    warm: bool = True,
    guard: WindowGuard | None = None,
) -> list[RepeatMeasurement]:
    """Warm up `runner` (a runtime's, see worker/runtimes) on random input until its time per batch is stable
    (`warm_up`), then run repeats over `data` inside `meter` windows, synchronising `device` at both edges. A
    repeat passes over the data again inside its window until the window lasts `spec.min_window_s` (default: the
    meter's `min_window_s`); its time and energy are then per sample over every pass, its accuracy the first's.
    Python's cyclic garbage collector is off inside each window (as in timeit), and what exists before the first
    repeat is frozen out of its sight.

    Repeats are `spec.repeats`, or with `spec.until_cv` as many as it takes for the coefficient of variation
    of time per sample to reach it (at least 3, at most `spec.max_repeats`). `probe` records conditions
    (temperatures) just before and after each window. `checkpoint()` runs before every batch and stops the
    benchmark by raising (a cancelled job stops within one batch). `warm=False` skips the warm-up (a comparison's
    later pairs, whose runner ran moments ago). `guard` (worker/contention.py) measures the CPU used elsewhere
    during each window and applies FARM_CONTENTION: a window it asks to redo is measured again.
    """
    data = data.head(spec.limit)
    if len(data) == 0:
        raise ValueError("no samples to benchmark")
    bs = spec.batch_size
    batches = [data.images[i : i + bs] for i in range(0, len(data), bs)]
    k = min(5, data.num_classes) if data.num_classes else 0
    warm_times: list[float] = []
    warmed = warm_up(runner, torch.randn_like(batches[0]), spec, device, checkpoint, warm_times) if warm else 0
    cold_s = warm_times[0] if warm_times else None

    planned = spec.planned_repeats
    min_window_s = meter.min_window_s if spec.min_window_s is None else spec.min_window_s
    window = {"min_window_s": min_window_s,
              "min_window_reason": meter.min_window_reason if spec.min_window_s is None else "set by the job"}
    results: list[RepeatMeasurement] = []
    bar = tqdm(total=planned * len(batches), desc="benchmark", unit="batch", leave=False, disable=None)
    gc_was_on = gc.isenabled()
    gc.collect()
    gc.freeze()  # what exists now (model, data) is out of the collector's sight for good
    try:
        r = 0
        while r < planned:
            preds: list[torch.Tensor] = []
            contention_start = guard.begin(checkpoint) if guard else None  # after any cool-down
            before = probe() if probe else {}
            started = utcnow()
            device.synchronize()
            passes = 0
            lat = LatencyRecorder(seed=r)
            gc.disable()  # as timeit does: a collection inside a window is jitter, not the model's cost
            t0 = time.perf_counter()
            with peak_memory(device) as mem, meter.window() as win:
                while passes == 0 or time.perf_counter() - t0 < min_window_s:
                    for x in batches:
                        if checkpoint:
                            checkpoint()
                        tb = time.perf_counter()  # per batch, device-synchronised (overhead: scripts/bench_deployer)
                        logits = runner(x)
                        device.synchronize()
                        lat.add(time.perf_counter() - tb)
                        if k and passes == 0:
                            preds.append(logits.topk(k, dim=-1).indices)
                        if passes == 0:
                            bar.update(1)
                    passes += 1
                    device.synchronize()
            if gc_was_on:
                gc.enable()
            top1 = top5 = None
            if data.labels is not None and preds:
                topk = torch.cat(preds).cpu()
                hits = topk == data.labels.unsqueeze(1)
                top1 = int(hits[:, 0].sum()) / len(data)
                top5 = int(hits.any(dim=1).sum()) / len(data)
            energy = win.measurement
            after = probe() if probe else {}
            contention = guard.judge(contention_start, checkpoint) if guard and contention_start else {}
            if contention is None:
                continue  # contended: the guard waited for a quiet machine; measure this repeat again
            contention = {**window, **contention}
            m = RepeatMeasurement(r, started, len(data) * passes, top1, top5, energy.duration_s, energy, before, after,
                                  warmed, passes, latency=lat.summary(), memory=mem[0] if mem else None,
                                  cold_latency_s=cold_s, contention=contention)
            r += 1
            results.append(m)
            if on_repeat:
                on_repeat(m)
            if spec.until_cv is not None and len(results) >= 3:
                if coefficient_of_variation([x.time_per_sample_s for x in results]) <= spec.until_cv:
                    break
    finally:
        bar.close()
        if gc_was_on:
            gc.enable()
    return results


def warm_up(runner: Runner, batch: torch.Tensor, spec: BenchSpec, device: DeviceHandle,
            checkpoint: Callable[[], None] | None = None, times: list[float] | None = None) -> int:
    """Run `batch` until time per batch is stable: at least `spec.warmup_batches`, then until the last three
    agree within `spec.warmup_cv` (bounded by `max_warmup_batches` and `max_warmup_s`). Returns the batches run.
    Caches, allocators, lazy kernels and CPU clocks settle here instead of in the first repeat. `times` (if
    given) receives each batch's seconds: the first is the cold latency."""
    times = [] if times is None else times
    start = time.perf_counter()
    while True:
        if checkpoint:
            checkpoint()
        t0 = time.perf_counter()
        runner(batch)
        device.synchronize()
        times.append(time.perf_counter() - t0)
        if len(times) >= max(spec.warmup_batches, 3) and coefficient_of_variation(times[-3:]) <= spec.warmup_cv:
            return len(times)
        if len(times) >= spec.max_warmup_batches or time.perf_counter() - start >= spec.max_warmup_s:
            return len(times)


def measure_idle(meter: Meter, idle_s: float, checkpoint: Callable[[], None] | None = None
                 ) -> EnergyMeasurement | None:
    """Energy over `idle_s` seconds of sleep with the benchmark's meter (None when idle_s is 0). `checkpoint()`
    runs every half second, so a cancelled job or a lost lease stops the wait too."""
    if idle_s <= 0:
        return None
    with meter.window() as win:
        end = time.monotonic() + idle_s
        while (left := end - time.monotonic()) > 0:
            if checkpoint:
                checkpoint()
            time.sleep(min(0.5, left))
    return win.measurement
