"""GPU time and NVML energy per sample of compression variants on a ViT-B/16-sized model (the seed's), batch 8.

Variants are built with farm's own functions (pruning, quanto quantization) and metered with farm's own meter
stack (`build_meter`: NVML on the GPU, plus the host CPU meter), interleaved round by round so that drift
(clocks, temperature) hits each alike. Weights are random: time and energy do not depend on them. Ratios are
against fp32 in the same run, on the same GPU. Usage:

    python scripts/bench_gpu.py [--device cuda:0] [--rounds 5] [--batches 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
from collections.abc import Callable

import torch
from torch import nn

from shared.settings import Settings
from shared.specs import PruneSpec, QuantSpec
from worker.compression.prune import prune_model
from worker.devices import open_device
from worker.hardware import cpu_model
from worker.meters.select import build_meter
from worker.runtimes.torch_eager import quantize


def vit_b16() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       image_size=224, patch_size=16, num_labels=100)
    return ViTForImageClassification(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40, help="batches of 8 per round and variant")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    device = open_device(args.device)
    dev = device.torch_device
    base = vit_b16().to(dev)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randn(8, 3, 224, 224, generator=gen).to(dev)

    def pruned() -> nn.Module:
        return prune_model(copy.deepcopy(base), PruneSpec(method="all", ratio=0.10), batch[:1])

    builders: dict[str, Callable[[], nn.Module]] = {
        "fp32": lambda: copy.deepcopy(base),
        "quant-uint8 (quanto w8)": lambda: quantize(copy.deepcopy(base), QuantSpec("uint8"), device),
        "quant-float8 (quanto f8)": lambda: quantize(copy.deepcopy(base), QuantSpec("float8"), device),
        "prune-all-r0.10": pruned,
        "prune-all-r0.10-uint8": lambda: quantize(pruned(), QuantSpec("uint8"), device),
    }
    models: dict[str, nn.Module] = {}
    for name, build in builders.items():
        try:
            models[name] = build()
        except Exception as exc:  # report a variant this GPU or library cannot run, and go on
            print(f"{name}: cannot build here: {type(exc).__name__}: {exc}")
    meter = build_meter(device, Settings.from_env())
    print(f"meter: {meter.describe()}")
    with torch.inference_mode():
        reference = base(batch).logits
        for model in models.values():  # warm-up
            for _ in range(5):
                model(batch)
        device.synchronize()
        per_sample: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                with meter.window() as win:
                    for _ in range(args.batches):
                        model(batch)
                    device.synchronize()
                m = win.measurement
                n = args.batches * batch.shape[0]
                # the GPU's own joules where NVML meters it; on a CPU device, the CPU meter's total
                energy_j = m.gpu_energy_j if m.gpu_energy_j is not None else m.total_energy_j
                per_sample[name].append((m.duration_s / n, energy_j / n))

    fp32_t = statistics.median(t for t, _ in per_sample["fp32"])
    fp32_e = statistics.median(e for _, e in per_sample["fp32"])
    print(f"GPU: {device.gpu_name} | host CPU: {cpu_model()} | torch {torch.__version__} | "
          f"Python {platform.python_version()} | meter {meter.name}")
    print(f"ViT-B/16-sized (hidden 768, 12 layers, 224x224, 100 classes), batch 8, median of {args.rounds} "
          f"interleaved rounds x {args.batches} batches\n")
    print(f"{'variant':28s} {'ms/sample':>10s} {'mJ/sample':>14s} {'speed-up':>9s} {'energy':>8s} "
          f"{'max |Δlogit|':>13s}")
    rows = []
    with torch.inference_mode():
        for name, model in models.items():
            t = statistics.median(x[0] for x in per_sample[name])
            e = statistics.median(x[1] for x in per_sample[name])
            drift = float((model(batch).logits - reference).abs().max())
            rows.append({"variant": name, "ms_per_sample": t * 1e3, "mj_per_sample": e * 1e3,
                         "speedup": fp32_t / t, "energy_ratio": e / fp32_e, "max_abs_logit_diff": drift})
            print(f"{name:28s} {t * 1e3:10.3f} {e * 1e3:14.2f} {fp32_t / t:8.2f}x {e / fp32_e - 1:+7.0%} "
                  f"{drift:13.3g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"gpu": device.gpu_name, "torch": torch.__version__, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
