"""Does `farm plan` pick measurements that teach the predictor faster than random picks? On the real rows of
tests/data/predict_rows.json: a "new machine" (every configuration of one hardware_id) starts with only its
baseline measured; the other machine is fully measured. For each budget N, plan picks N of the new machine's
cells (greedy A-optimal, plan.py) and random picks N (several seeds); the picked cells' real measurements are
revealed, the predictor is refitted, and the error of the new machine's grid is scored:

  grid  - median absolute % error over ALL the new machine's cells, a revealed cell counting as exact
  rest  - median absolute % error over the cells still unmeasured

    python scripts/plan_vs_random.py [--fixture F] [--budgets 2,4,6,8] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from controller.predict.conformal import leave_one_cell_out, leave_one_variant_out
from controller.predict.features import Cell, cells_from_rows
from controller.predict.model import fit
from controller.predict.plan import additive, misfit_noise, plan, priors_from

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "predict_rows.json"


def score(known: list[Cell], hidden: list[Cell], target: str) -> tuple[float, float]:
    """(grid, rest) median APE in % of the hidden cells predicted from `known`."""
    p = fit(known)
    errs = []
    for c in hidden:
        y = c.time_s if target == "time" else c.energy_j
        pred = p.point(c.model_id, c.variant, c.config, (c.params, c.macs))[target]
        errs.append(100 * abs(pred - y) / y)
    total = len(errs) + len([c for c in known if c.config.hardware_id == hidden[0].config.hardware_id])
    grid = sorted(errs + [0.0] * (total - len(errs)))
    return statistics.median(grid), statistics.median(errs) if errs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--budgets", default="2,4,6,8")
    ap.add_argument("--design", choices=("shares", "additive"), default="shares",
                    help="plan's features: each kind's share of a cell's cost (farm plan's), or one effect per "
                         "configuration and per variant")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--new-machine", default=None, help="hardware_id prefix of the machine to start bare "
                                                          "(default: the one with the most threads)")
    a = ap.parse_args()
    data = json.loads(a.fixture.read_text())
    cells = cells_from_rows(data["rows"])
    threads = {r["hardware_id"]: r.get("threads") or 0 for r in data["rows"]}
    new = a.new_machine or max(threads, key=lambda h: threads[h])
    new = next(h for h in threads if h.startswith(new))
    anchors = [c for c in cells if c.config.hardware_id == new and c.variant == "baseline"]
    pool = [c for c in cells if c.config.hardware_id == new and c.variant != "baseline"]
    start = [c for c in cells if c.config.hardware_id != new] + anchors
    p0 = fit(start)
    noise = sorted(c.noise_log_var / max(c.repeats, 1) for c in start)
    held = leave_one_cell_out(p0)
    errors: dict[str, list[float]] = {}
    for h in held:
        errors.setdefault(h.cell.variant, []).append(h.log_error("time"))
    priors = priors_from([h.log_error("time") for h in held],
                         [h.log_error("time") for h in leave_one_variant_out(p0)], noise[len(noise) // 2])
    key = {(c.config.key(), c.variant): c for c in pool}
    configs = {c.config.key(): c.config for c in cells}
    costs = {c.variant: (c.params, c.macs) for c in cells}

    def features(cell: tuple[str, str]) -> dict[object, float]:
        shares = p0.shares(cells[0].model_id, cell[1], configs[cell[0]], costs[cell[1]])
        return {**{("c", cell[0], k): v for k, v in shares.items()}, ("v", cell[1]): 1.0}

    print(f"new machine {new}: {len(anchors)} anchor cells (baselines), {len(pool)} cells to pick from; "
          f"other machine: {len(start) - len(anchors)} cells; priors {priors}")
    print(f"{'N':>3} {'target':>7} | {'plan grid':>9} {'plan rest':>9} | {'random grid':>11} "
          f"{'random rest':>11} (mean of {a.seeds} seeds, min-max grid)")
    wins = 0
    rounds = 0
    for n in (int(x) for x in a.budgets.split(",")):
        picks = plan([(c.config.key(), c.variant) for c in start], list(key), list(key), n, priors,
                     features if a.design == "shares" else additive,
                     misfit_noise(errors, priors.noise_var))
        chosen = [key[p.config, p.variant] for p in picks]
        for target in ("time", "energy"):
            pg, pr = score(start + chosen, [c for c in pool if c not in chosen], target)
            rg, rr = [], []
            for seed in range(a.seeds):
                rand = random.Random(seed).sample(pool, n)
                g, r = score(start + rand, [c for c in pool if c not in rand], target)
                rg.append(g)
                rr.append(r)
            wins += pg <= statistics.mean(rg)
            rounds += 1
            names = ", ".join(f"{c.variant}/{c.config.runtime}" for c in chosen)
            print(f"{n:>3} {target:>7} | {pg:9.1f} {pr:9.1f} | {statistics.mean(rg):11.1f} "
                  f"{statistics.mean(rr):11.1f} ({min(rg):.1f}-{max(rg):.1f})  plan picked: {names}")
    print(f"plan's grid error <= random's mean in {wins} of {rounds} (budget, target) pairs")


if __name__ == "__main__":
    main()
