"""Side-by-side CPU speed of compression variants on a ViT-S/16-sized model (hidden 384, 6 layers, 224x224).

Prints time per sample (median of interleaved rounds) and the speed-up over fp32, all measured in this one
run on this machine. Weights are random: speed does not depend on them. Usage:

    python scripts/bench_speed.py [--rounds 5] [--batches 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from shared.specs import PruneSpec, QuantSpec
from worker.compression.prune import prune_model
from worker.devices import open_device
from worker.hardware import cpu_model
from worker.runtimes.torch_eager import quantize

CPU = open_device("cpu")


def vit_s16() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536,
                       image_size=224, patch_size=16, num_labels=100)
    return ViTForImageClassification(config).eval()


def quanto_w8a8(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """optimum-quanto int8 weights and int8 activations, calibrated on a few batches (the alternative)."""
    from optimum.quanto import Calibration, freeze, qint8, quantize

    quantize(model, weights=qint8, activations=qint8)
    with torch.inference_mode(), Calibration():
        for batch in calibration.split(8):
            model(batch)
    freeze(model)
    return model


def build_variants(base: nn.Module, example: torch.Tensor, calib: torch.Tensor) -> dict[str, Callable[[], nn.Module]]:
    def pruned() -> nn.Module:
        return prune_model(copy.deepcopy(base), PruneSpec(method="all", ratio=0.10), example)

    return {
        "fp32": lambda: copy.deepcopy(base),
        "quant-uint8 (quanto w8)": lambda: quantize(copy.deepcopy(base), QuantSpec("uint8"), CPU),
        "quant-float8 (quanto f8)": lambda: quantize(copy.deepcopy(base), QuantSpec("float8"), CPU),
        "quanto w8a8 (calibrated)": lambda: quanto_w8a8(copy.deepcopy(base), calib),
        "quant-int8dyn": lambda: quantize(copy.deepcopy(base), QuantSpec("int8dyn"), CPU),
        "prune-all-r0.10": pruned,
        "prune-all-r0.10-int8dyn": lambda: quantize(pruned(), QuantSpec("int8dyn"), CPU),
    }


@torch.inference_mode()
def time_per_sample_s(model: nn.Module, batch: torch.Tensor, batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        model(batch)
    return (time.perf_counter() - t0) / (batches * batch.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6, help="batches of 8 per round and variant")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    base = vit_s16()
    gen = torch.Generator().manual_seed(0)
    batch = torch.randn(8, 3, 224, 224, generator=gen)
    example = batch[:1]
    models = {name: build() for name, build in build_variants(base, example, batch).items()}
    with torch.inference_mode():
        reference = base(batch).logits
        for model in models.values():  # warm-up
            for _ in range(2):
                model(batch)
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):  # interleaved, so drift hits every variant alike
        for name, model in models.items():
            samples[name].append(time_per_sample_s(model, batch, args.batches))

    fp32 = statistics.median(samples["fp32"])
    print(f"CPU: {cpu_model()} | threads: {torch.get_num_threads()} | torch {torch.__version__} | "
          f"quantized engine: {torch.backends.quantized.engine} | Python {platform.python_version()}")
    print(f"ViT-S/16-sized (hidden 384, 6 layers, 224x224), batch 8, median of {args.rounds} rounds "
          f"x {args.batches} batches\n")
    print(f"{'variant':28s} {'ms/sample':>10s} {'speed-up':>9s} {'max |Δlogit|':>13s}")
    rows = []
    with torch.inference_mode():
        for name, model in models.items():
            t = statistics.median(samples[name])
            drift = float((model(batch).logits - reference).abs().max())
            rows.append({"variant": name, "ms_per_sample": t * 1e3, "speedup": fp32 / t, "max_abs_logit_diff": drift})
            print(f"{name:28s} {t * 1e3:10.2f} {fp32 / t:8.2f}x {drift:13.3g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
