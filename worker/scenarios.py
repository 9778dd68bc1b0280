"""MLPerf Inference's scenarios (docs/deployer-metrics.md): which loop a benchmark runs.

- `offline`: the closed loop of worker/bench.py over batches of `batch_size` (farm's protocol so far).
- `single-stream`: the same loop at batch 1: one query at a time, the next issued when the last is answered;
  its headline is latency p90.
- `server`: queries arrive at a target rate (Poisson arrivals from a seeded generator) into a FIFO queue;
  one runner call answers the oldest query, or with a dynamic batcher (`max_batch` > 1) up to `max_batch`
  queued ones, waiting at most `max_wait_ms` for a batch to fill. A query's latency runs from its scheduled
  arrival to its answer, so time spent queued behind a busy model counts. Headline: p99, achieved QPS, late
  queries (answered after the latency bound) and dropped ones (unanswered when the window's drain time ran
  out: a rate far above capacity ends on time with drops, it does not hang); energy per query covers the
  whole window, idle time between arrivals included.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from shared.db.types import utcnow
from shared.specs import BenchSpec
from worker.bench import RepeatMeasurement, run_benchmark, warm_up
from worker.contention import WindowGuard
from worker.devices.base import DeviceHandle
from worker.latency import LatencyRecorder
from worker.memory import peak_memory
from worker.meters.base import Meter
from worker.runtimes.base import Runner
from worker.workloads.types import ImageSet

DEFAULT_LATENCY_BOUND_MS = 100.0  # a server query answered later than this is late (without --p99-ms)
SPIN_S = 0.0015  # the generator sleeps until this long before an arrival, then spins: sleep() overshoots
CHECK_EVERY_S = 0.5  # how often the server loop calls checkpoint()
MAX_QUERIES = 2_000_000  # qps x server_s above this is refused (the schedule is held in memory)


@dataclass(frozen=True)
class ServerStats:
    """One server window: the target and achieved rate (answered queries per second of the window), queries
    issued, answered, late (latency over `bound_s`) and dropped, and the generator's arrival lag (how late the
    loop woke for an arrival it was idle for), seconds."""

    target_qps: float
    achieved_qps: float
    issued: int
    answered: int
    late: int
    dropped: int
    bound_s: float
    arrival_lag_mean_s: float | None
    arrival_lag_max_s: float | None
    arrival_lag_p99_s: float | None = None
    idle_arrivals: int = 0  # arrivals the loop was idle for (the lag is measured on these)


@dataclass(frozen=True)
class ServerMeasurement(RepeatMeasurement):
    """A server window as a repeat (samples: answered queries; latency: per query), with its ServerStats."""

    server: ServerStats | None = None


def poisson_arrivals(qps: float, seconds: float, seed: int) -> list[float]:
    """Arrival times (s from the window's start) of a Poisson process at `qps` over `seconds`, conditioned on
    its mean count round(qps x seconds): given the count, Poisson arrivals are uniform order statistics. The
    condition keeps a short window's offered rate at the target (an unconditioned 2 s window at 50 QPS
    offers 10 % more or less one time in three)."""
    n = max(1, round(qps * seconds))
    rng = random.Random(seed)
    return sorted(rng.uniform(0.0, seconds) for _ in range(n))


def wait_until(deadline: float) -> float:
    """Sleep until perf_counter() reaches `deadline` (sleep, then spin the last SPIN_S); returns the time."""
    left = deadline - time.perf_counter()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while (now := time.perf_counter()) < deadline:
        pass
    return now


def run_scenario(runner: Runner, data: ImageSet, spec: BenchSpec, device: DeviceHandle, meter: Meter, *,
                 on_repeat: Callable[[RepeatMeasurement], None] | None = None,
                 probe: Callable[[], dict[str, Any]] | None = None,
                 checkpoint: Callable[[], None] | None = None,
                 guard: WindowGuard | None = None) -> list[RepeatMeasurement]:
    """The repeats of `spec.scenario` (see the module's docstring). `guard` applies FARM_CONTENTION to the closed-loop
    scenarios' windows (worker/contention.py); a server window's contention is not judged."""
    if spec.scenario == "offline":
        return run_benchmark(runner, data, spec, device, meter, on_repeat=on_repeat, probe=probe,
                             checkpoint=checkpoint, guard=guard)
    if spec.scenario == "single-stream":
        return run_benchmark(runner, data, replace(spec, batch_size=1), device, meter, on_repeat=on_repeat,
                             probe=probe, checkpoint=checkpoint, guard=guard)
    return run_server(runner, data, spec, device, meter, on_repeat=on_repeat, probe=probe, checkpoint=checkpoint)


@torch.inference_mode()
def run_server(runner: Runner, data: ImageSet, spec: BenchSpec, device: DeviceHandle, meter: Meter, *,
               on_repeat: Callable[[RepeatMeasurement], None] | None = None,
               probe: Callable[[], dict[str, Any]] | None = None,
               checkpoint: Callable[[], None] | None = None) -> list[RepeatMeasurement]:
    """Warm up at the batcher's size, then `spec.repeats` server windows at `spec.qps`; with `spec.qps_sweep`,
    a search for the highest rate whose p99 stays under `spec.p99_ms` instead (one window per rate tried)."""
    data = data.head(spec.limit)
    if len(data) == 0:
        raise ValueError("no samples to benchmark")
    times: list[float] = []
    example = data.images[: spec.max_batch]
    if len(example) < spec.max_batch:
        example = example.repeat(spec.max_batch // len(example) + 1, 1, 1, 1)[: spec.max_batch]
    warmed = warm_up(runner, torch.randn_like(example), spec, device, checkpoint, times)
    warm_up(runner, torch.randn_like(data.images[:1]), replace(spec, warmup_batches=3), device, checkpoint)
    cold = times[0] if times else None
    bound_s = (spec.p99_ms if spec.p99_ms is not None else DEFAULT_LATENCY_BOUND_MS) / 1e3
    out: list[RepeatMeasurement] = []

    def one(index: int, qps: float) -> ServerMeasurement:
        m = server_window(runner, data, spec, device, meter, qps, bound_s, index, probe, checkpoint)
        m = replace(m, warmup_batches=warmed, cold_latency_s=cold)
        out.append(m)
        if on_repeat:
            on_repeat(m)
        return m

    if not spec.qps_sweep:
        if spec.qps is None:
            raise ValueError("the server scenario needs a target QPS")
        for r in range(spec.repeats):
            one(r, spec.qps)
        return out
    # a search: start at the rate one model call per query sustains, bisect between meeting and missing
    t0 = time.perf_counter()
    runner(data.images[:1])
    device.synchronize()
    capacity = 1.0 / max(time.perf_counter() - t0, 1e-6)
    lo, hi = 0.0, None
    qps = spec.qps or capacity * 0.8
    for r in range(spec.planned_repeats):
        m = one(r, qps)
        ok = m.server is not None and m.server.dropped == 0 and m.latency is not None and m.latency.p99_s <= bound_s
        if ok:
            lo = qps
            qps = qps * 2 if hi is None else (lo + hi) / 2
        else:
            hi = qps
            qps = (lo + hi) / 2 if lo else qps / 2
    return out


def server_window(runner: Runner, data: ImageSet, spec: BenchSpec, device: DeviceHandle, meter: Meter,
                  qps: float, bound_s: float, index: int, probe: Callable[[], dict[str, Any]] | None = None,
                  checkpoint: Callable[[], None] | None = None) -> ServerMeasurement:
    """One server window of `spec.server_s` seconds of arrivals at `qps`, then at most max(1 s, half of it)
    to drain the queue; what is still queued then is dropped."""
    if qps <= 0:
        raise ValueError(f"QPS must be positive, got {qps}")
    if qps * spec.server_s > MAX_QUERIES:
        raise ValueError(f"{qps:g} QPS over {spec.server_s:g} s is more than {MAX_QUERIES} queries")
    sched = poisson_arrivals(qps, spec.server_s, spec.seed + index)
    n, images = len(sched), data.images
    size = len(images)
    max_batch, max_wait = max(1, spec.max_batch), spec.max_wait_ms / 1e3
    drain_until = spec.server_s + max(1.0, spec.server_s / 2)
    lat, lags = LatencyRecorder(seed=index), LatencyRecorder(seed=index)
    late = head = arrived = 0
    last_done = 0.0
    before = probe() if probe else {}
    started = utcnow()
    gc_was_on = gc.isenabled()
    gc.collect()
    device.synchronize()
    gc.disable()
    try:
        with peak_memory(device) as mem, meter.window() as win:
            t0 = time.perf_counter()
            next_check = 0.0
            while head < n:
                now = time.perf_counter() - t0
                if now > drain_until:
                    break
                if checkpoint and now >= next_check:
                    checkpoint()
                    next_check = now + CHECK_EVERY_S
                while arrived < n and sched[arrived] <= now:
                    arrived += 1
                if head == arrived:  # queue empty: idle until the next arrival
                    woke = wait_until(t0 + sched[arrived]) - t0
                    lags.add(woke - sched[arrived])
                    continue
                queued = arrived - head
                if queued < max_batch and max_wait > 0 and arrived < n:
                    fill_by = sched[head] + max_wait
                    if now < fill_by:  # the batcher waits for the batch to fill, or the oldest query's wait
                        wait_until(t0 + min(fill_by, sched[arrived]))
                        continue
                b = min(max_batch, queued)
                first = head % size
                x = images[first: first + b] if first + b <= size else torch.cat(
                    [images[(head + j) % size].unsqueeze(0) for j in range(b)])
                runner(x)
                device.synchronize()
                done = time.perf_counter() - t0
                for q in range(head, head + b):
                    latency = done - sched[q]
                    lat.add(latency)
                    late += latency > bound_s
                head += b
                last_done = done
        if gc_was_on:
            gc.enable()
    finally:
        if gc_was_on:
            gc.enable()
    energy = win.measurement
    after = probe() if probe else {}
    if head == 0:
        raise ValueError(f"the server answered no query in {drain_until:g} s at {qps:g} QPS")
    lag = lags.summary()
    stats = ServerStats(qps, head / max(last_done, spec.server_s), n, head, late, n - head, bound_s,
                        lag.mean_s if lag else None, lag.max_s if lag else None, lag.p99_s if lag else None,
                        lag.count if lag else 0)
    return ServerMeasurement(index, started, head, None, None, energy.duration_s, energy, before, after, 0, 1,
                             latency=lat.summary(), memory=mem[0] if mem else None, server=stats)
