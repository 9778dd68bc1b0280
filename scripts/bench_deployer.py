"""The deployer measures' own costs, side by side in one run (issue 21):

1. the per-batch timer (two clock reads, a device synchronize, a reservoir record) against a batch-1 inference of
   the built-in model: goal under 1 %. Printed two ways: the timer's median cost on an empty call over the
   median batch-1 inference, and the time per batch of a loop with the timer over one without (interleaved
   rounds, medians: the second is noisier, since it differences two near-equal times);
2. the server scenario's arrival generator at 200 QPS: how late the loop wakes for an arrival it was idle for
   (goal: within 1 ms of schedule), mean, p99 and max over the arrivals it waited for.

    python scripts/bench_deployer.py [--device cpu] [--threads 1] [--batches 400] [--rounds 7] [--server-s 5]

The built-in model's architecture runs with random weights: its cost is the trained model's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.specs import BenchSpec  # noqa: E402
from worker.devices import open_device  # noqa: E402
from worker.latency import LatencyRecorder, timer_overhead_s  # noqa: E402
from worker.meters.estimate import CpuTimeEstimate  # noqa: E402
from worker.runtimes.torch_eager import TorchRuntime  # noqa: E402
from worker.scenarios import run_server  # noqa: E402
from worker.workloads.digits import load_digits_split  # noqa: E402
from worker.workloads.models import build_builtin_untrained  # noqa: E402


def isa() -> str:
    from worker.hardware import cpu_facts

    return ",".join(cpu_facts()["isa"]) or "none of avx2/avx512"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--server-s", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = open_device(args.device)
    runner = TorchRuntime().load(build_builtin_untrained().eval(), None, device, torch.randn(1, 1, 8, 8))
    data = load_digits_split("test")
    x = data.images[:1]
    print(f"# {platform.processor() or platform.machine()}; ISA {isa()}; device {device}; torch threads "
          f"{torch.get_num_threads()}; measured while other work ran on this machine unless it was idle")

    with torch.inference_mode():
        for _ in range(200):
            runner(x)
        device.synchronize()
        plain, timed_ = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.batches):
                runner(x)
            device.synchronize()
            plain.append((time.perf_counter() - t0) / args.batches)
            rec = LatencyRecorder()
            t0 = time.perf_counter()
            for _ in range(args.batches):
                tb = time.perf_counter()
                runner(x)
                device.synchronize()
                rec.add(time.perf_counter() - tb)
            timed_.append((time.perf_counter() - t0) / args.batches)
        batch1 = statistics.median(plain)
    overhead = timer_overhead_s(device.synchronize)
    print(f"batch-1 inference, median over rounds: {batch1 * 1e3:.4f} ms")
    print(f"per-batch timer cost (empty call, median): {overhead * 1e6:.3f} us")
    print(f"timer overhead ratio (timer / batch-1 inference): {overhead / batch1:.5f} "
          f"({'under' if overhead / batch1 < 0.01 else 'OVER'} the 1 % goal)")
    print(f"loop with timer / loop without, per batch: {statistics.median(timed_) / batch1:.4f} "
          f"(rounds: {', '.join(f'{t / p:.3f}' for t, p in zip(timed_, plain, strict=True))})")

    spec = BenchSpec(scenario="server", qps=200, server_s=args.server_s, repeats=1, warmup_batches=5,
                     max_warmup_s=5.0)
    for label, run in (("built-in model", runner), ("no-op model (the generator alone)", lambda b: b)):
        (rep,) = run_server(run, data, spec, device, CpuTimeEstimate(10.0))
        s = rep.server
        assert s is not None and rep.latency is not None
        print(f"server, {label}, 200 QPS for {args.server_s:g} s: issued {s.issued}, answered {s.answered}, "
              f"achieved {s.achieved_qps:.1f} QPS, p99 {rep.latency.p99_s * 1e3:.3f} ms, late {s.late}, "
              f"dropped {s.dropped}")
        if not s.idle_arrivals:
            print("  arrival lag: no arrival found the loop idle (the model is over capacity here)")
            continue
        print(f"  arrival lag over {s.idle_arrivals} idle arrivals: mean {s.arrival_lag_mean_s * 1e3:.4f} ms, "
              f"p99 {s.arrival_lag_p99_s * 1e3:.4f} ms, max {s.arrival_lag_max_s * 1e3:.4f} ms "
              f"({'within' if s.arrival_lag_p99_s <= 1e-3 else 'NOT within'} 1 ms at p99)")

if __name__ == "__main__":
    main()
