"""How much the built-in baseline's test top-1 varies with the training seed on this machine.

Trains the built-in ViT (the recipe of worker/workloads/models.py) once per seed, initialisation and training
order both seeded, and prints each seed's test top-1 with the machine's ISA and torch version: the README's
range comes from running this on several machines. Usage:

    python scripts/builtin_spread.py [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    from transformers import ViTForImageClassification

    from worker.hardware import cpu_facts, cpu_model
    from worker.training import FitConfig, fit
    from worker.workloads.digits import load_digits_split
    from worker.workloads.models import BUILTIN_RECIPE, _vit_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    split = BUILTIN_RECIPE["data"]["split_seed"]
    train, val = load_digits_split("train", seed=split), load_digits_split("val", seed=split)
    test = load_digits_split("test", seed=split)
    print(f"CPU: {cpu_model()} | ISA: {','.join(cpu_facts()['isa'])} | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | Python {platform.python_version()}")
    top1s = []
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        model = ViTForImageClassification(_vit_config(BUILTIN_RECIPE["config"]))
        config = replace(FitConfig(**BUILTIN_RECIPE["fit"]), seed=seed)
        model, _ = fit(model, train, val, config, desc=f"seed {seed}")
        with torch.inference_mode():
            pred = model.eval()(test.images).logits.argmax(-1)
        top1 = float((pred == test.labels).float().mean())
        top1s.append(top1)
        print(f"seed {seed}: test top-1 {100 * top1:.2f} %  ({int((pred != test.labels).sum())} of {len(test)} wrong)")
    print(f"range {100 * min(top1s):.2f}-{100 * max(top1s):.2f} %, mean {100 * statistics.fmean(top1s):.2f} %")


if __name__ == "__main__":
    main()
