"""Side-by-side CPU speed of compression variants and runtimes on a ViT-S/16-sized model (hidden 384, 6 layers,
224x224), batch 8, loaded through farm's own runtimes (worker/runtimes): torch eager, ONNX Runtime, OpenVINO.

Prints time per sample (median of interleaved rounds), the speed-up over torch fp32 eager in this same run, the
largest logit difference from torch fp32, and the achieved MAC rate against the ISA's peak. Weights and inputs
are random: speed does not depend on them (calibration uses random images too). Usage:

    python scripts/bench_speed.py [--rounds 5] [--batches 6] [--only torch,onnxruntime] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.specs import PruneSpec, QuantSpec  # noqa: E402
from worker.compression.prune import prune_model  # noqa: E402
from worker.cost import model_cost  # noqa: E402
from worker.devices import open_device  # noqa: E402
from worker.hardware import cpu_facts, cpu_model  # noqa: E402
from worker.runtimes import available_runtimes, get_runtime  # noqa: E402

CPU = open_device("cpu")
Runner = Callable[[torch.Tensor], torch.Tensor]
# MACs per cycle per core at the widest path each ISA has, two vector FMA/dot-product ports assumed (Intel
# server cores; AMD Zen 4 splits 512-bit work over 256-bit units, so its real peak may be half): fp32 FMA lanes,
# and int8 dot-product lanes (VNNI's VPDPBUSD: 4 int8 MACs per 32-bit lane; AVX2 without VNNI needs three
# instructions for the same, counted here at the 16-bit VPMADDWD rate).
PEAK_MACS_PER_CYCLE = {"avx2": {"fp32": 2 * 8, "int8": 2 * 16}, "avx512f": {"fp32": 2 * 16, "int8": 2 * 32},
                       "avx512_vnni": {"fp32": 2 * 16, "int8": 2 * 64}}


def vit_s16() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536,
                       image_size=224, patch_size=16, num_labels=100)
    return ViTForImageClassification(config).eval()


def variants(runtimes: list[str]) -> list[tuple[str, str, bool, str | None]]:
    """(label, runtime, pruned, int8 scheme)."""
    table = {
        "torch": [("torch fp32", False, None), ("torch quant-int8dyn", False, "int8dyn"),
                  ("torch prune-all-r0.10", True, None), ("torch prune-all-r0.10-int8dyn", True, "int8dyn")],
        "onnxruntime": [("ort fp32", False, None), ("ort quant-ort-int8dyn", False, "ort-int8dyn"),
                        ("ort quant-ort-int8 (static QDQ)", False, "ort-int8"),
                        ("ort prune-all-r0.10-ort-int8dyn", True, "ort-int8dyn"),
                        ("ort prune-all-r0.10-ort-int8", True, "ort-int8")],
        "openvino": [("ov fp32", False, None), ("ov quant-ov-int8 (NNCF)", False, "ov-int8"),
                     ("ov prune-all-r0.10", True, None), ("ov prune-all-r0.10-ov-int8", True, "ov-int8")],
    }
    return [(label, rt, pruned, scheme) for rt in runtimes for label, pruned, scheme in table[rt]]


@torch.inference_mode()
def time_per_sample_s(run: Runner, batch: torch.Tensor, batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        run(batch)
    return (time.perf_counter() - t0) / (batches * batch.shape[0])


def cpu_ghz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1e3
    except (OSError, ValueError):
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6, help="batches of 8 per round and variant")
    parser.add_argument("--only", default=None, help="runtimes to run, comma-separated (default: every installed)")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    runtimes = [r for r in available_runtimes() if args.only is None or r in args.only.split(",")]
    base = vit_s16()
    gen = torch.Generator().manual_seed(0)
    batch = torch.randn(8, 3, 224, 224, generator=gen)
    calibration = [torch.randn(8, 3, 224, 224, generator=gen) for _ in range(4)]
    example = batch[:1]
    pruned = prune_model(copy.deepcopy(base), PruneSpec(method="all", ratio=0.10), example)
    macs = {False: model_cost(base, example).macs, True: model_cost(pruned, example).macs}
    runners: dict[str, Runner] = {}
    meta: dict[str, tuple[bool, str | None]] = {}
    for label, rt, is_pruned, scheme in variants(runtimes):
        model = copy.deepcopy(pruned if is_pruned else base)
        runners[label] = get_runtime(rt).load(model, QuantSpec(scheme) if scheme else None, CPU, example,
                                              calibration=lambda: calibration)
        meta[label] = (is_pruned, scheme)
    with torch.inference_mode():
        reference = base(batch).logits
        for run in runners.values():  # warm-up
            for _ in range(3):
                run(batch)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):  # interleaved, so drift hits every variant alike
        for name, run in runners.items():
            samples[name].append(time_per_sample_s(run, batch, args.batches))

    isa = cpu_facts()["isa"]
    tier = next((t for t in ("avx512_vnni", "avx512f", "avx2") if t in isa), None)
    ghz, cores = cpu_ghz(), torch.get_num_threads()
    fp32 = statistics.median(samples["torch fp32"]) if "torch fp32" in samples else None
    print(f"CPU: {cpu_model()} | ISA: {', '.join(isa) or 'none of avx2/avx512'} | {ghz or '?'} GHz | "
          f"threads: {cores} | torch {torch.__version__} | Python {platform.python_version()}")
    print(f"runtimes: {', '.join(f'{r} {get_runtime(r).version()}' for r in runtimes)}")
    print(f"ViT-S/16-sized (hidden 384, 6 layers, 224x224), batch 8, median of {args.rounds} interleaved rounds "
          f"x {args.batches} batches; MACs/sample {macs[False] / 1e9:.2f} G (pruned {macs[True] / 1e9:.2f} G)\n")
    print(f"{'variant':36s} {'ms/sample':>10s} {'vs torch fp32':>13s} {'max |Δlogit|':>13s} {'GMAC/s':>8s} "
          f"{'of peak*':>8s}")
    rows = []
    with torch.inference_mode():
        for name, run in runners.items():
            t = statistics.median(samples[name])
            is_pruned, scheme = meta[name]
            rate = macs[is_pruned] / t
            kind = "int8" if scheme else "fp32"
            peak = (PEAK_MACS_PER_CYCLE[tier][kind] * cores * ghz * 1e9) if tier and ghz else None
            drift = float((run(batch) - reference).abs().max())
            rows.append({"variant": name, "ms_per_sample": t * 1e3, "speedup": None if fp32 is None else fp32 / t,
                         "max_abs_logit_diff": drift, "gmac_per_s": rate / 1e9,
                         "fraction_of_peak": None if peak is None else rate / peak, "isa": isa})
            speed = "-" if fp32 is None else f"{fp32 / t:.2f}x"
            print(f"{name:36s} {t * 1e3:10.2f} {speed:>13s} {drift:13.3g} {rate / 1e9:8.1f} "
                  f"{'-' if peak is None else f'{rate / peak:7.0%}':>8s}")
    if tier and ghz:
        print(f"\n*peak: {tier} at {ghz:.2f} GHz (/proc/cpuinfo's clock: a VM often shows the base clock, and a "
              f"core that turbos above it can pass 100 %) x {cores} threads: fp32 "
              f"{PEAK_MACS_PER_CYCLE[tier]['fp32'] * cores * ghz:.0f} GMAC/s, int8 "
              f"{PEAK_MACS_PER_CYCLE[tier]['int8'] * cores * ghz:.0f} GMAC/s (2 vector ports assumed)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
