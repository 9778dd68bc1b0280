"""Time per sample of torch quantization schemes against fp32 on one model, loaded through farm's torch runtime.

Batch 8, random weights and inputs (speed does not depend on them), `--threads` torch threads, rounds interleaved
so that drift hits every variant alike; prints the ISA, each scheme's median time per sample, its ratio to fp32
in this same run, and the largest logit difference from fp32. Usage:

    python scripts/bench_scheme.py bf16 [int4 ...] [--model builtin|vit-s16] [--threads 1] [--rounds 9]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.specs import QuantSpec  # noqa: E402
from worker.devices import open_device  # noqa: E402
from worker.hardware import cpu_facts, cpu_model  # noqa: E402
from worker.runtimes import get_runtime  # noqa: E402


def model_and_batch(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model (random weights) and one batch of 8 random images in its input format."""
    gen = torch.Generator().manual_seed(0)
    if name == "builtin":
        from worker.workloads.models import build_builtin_untrained

        return build_builtin_untrained(), torch.randn(8, 1, 8, 8, generator=gen)
    from scripts.bench_speed import vit_s16

    return vit_s16(), torch.randn(8, 3, 224, 224, generator=gen)


@torch.inference_mode()
def time_per_sample_s(run: object, batch: torch.Tensor, batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        run(batch)  # type: ignore[operator]
    return (time.perf_counter() - t0) / (batches * batch.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schemes", nargs="+", help="torch quantization schemes (shared/stages.py)")
    parser.add_argument("--model", choices=["builtin", "vit-s16"], default="builtin")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batches", type=int, default=50, help="batches of 8 per round and variant")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    base, batch = model_and_batch(args.model)
    torch_rt, cpu = get_runtime("torch"), open_device("cpu")
    runners = {"fp32": torch_rt.load(copy.deepcopy(base), None, cpu, batch[:1])}
    for scheme in args.schemes:
        runners[scheme] = torch_rt.load(copy.deepcopy(base), QuantSpec(scheme), cpu, batch[:1])
    with torch.inference_mode():
        reference = runners["fp32"](batch)
        for run in runners.values():  # warm-up
            for _ in range(5):
                run(batch)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            samples[name].append(time_per_sample_s(run, batch, args.batches))

    print(f"CPU: {cpu_model()} | ISA: {', '.join(cpu_facts()['isa']) or 'none listed'} | threads: "
          f"{torch.get_num_threads()} | torch {torch.__version__}")
    print(f"{args.model}, batch 8, median of {args.rounds} interleaved rounds x {args.batches} batches\n")
    print(f"{'variant':10s} {'us/sample':>10s} {'fp32 / it':>10s} {'IQR/median':>11s} {'max |dlogit|':>13s}")
    fp32 = statistics.median(samples["fp32"])
    with torch.inference_mode():
        for name, run in runners.items():
            t = statistics.median(samples[name])
            q = statistics.quantiles(samples[name], n=4)
            drift = float((run(batch) - reference).abs().max())
            print(f"{name:10s} {t * 1e6:10.1f} {fp32 / t:9.2f}x {(q[2] - q[0]) / t:11.1%} {drift:13.3g}")


if __name__ == "__main__":
    main()
