"""Does `farm plan` pick measurements that teach the predictor faster than random picks? On the real rows of
tests/data/predict_rows.json, in BOTH directions: each hardware_id in turn is the "new machine", which starts
with only its baselines measured (one anchor per runtime) while the other machine is fully measured. For each
budget N, `farm plan`'s design (plan.design, the same call `farm plan` makes) picks N of the new machine's
cells, and random picks N (many seeds); the picked cells' real measurements are revealed, the predictor is
refitted, and the new machine's grid is scored:

  grid  - median absolute % error over ALL the new machine's non-anchor cells, a revealed cell counting as exact
  rest  - median absolute % error over the cells still unmeasured

A seed is "beaten" when the plan's grid error is below that seed's (a tie counts half).

    python scripts/plan_vs_random.py [--fixture F] [--budgets 2,4,6,8] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from controller.predict.conformal import leave_one_cell_out, leave_one_variant_out
from controller.predict.features import Cell, cells_from_rows
from controller.predict.model import fit
from controller.predict.plan import design

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "predict_rows.json"
TARGETS = ("time", "energy")


def score(known: list[Cell], hidden: list[Cell], revealed: int, target: str) -> tuple[float, float]:
    """(grid, rest) median APE in % of the hidden cells predicted from `known`; `revealed` cells count 0."""
    p = fit(known)
    errs = []
    for c in hidden:
        y = c.time_s if target == "time" else c.energy_j
        pred = p.point(c.model_id, c.variant, c.config, (c.params, c.macs))[target]
        errs.append(100 * abs(pred - y) / y)
    return statistics.median(errs + [0.0] * revealed), statistics.median(errs) if errs else 0.0


@dataclass
class Row:
    """One (new machine, budget, target): the plan's scores, each seed's random scores, the plan's picks."""

    new: str
    n: int
    target: str
    plan_grid: float
    plan_rest: float
    random_grid: list[float]
    random_rest: list[float]
    picks: list[str]

    @property
    def beaten(self) -> float:
        """Fraction of seeds whose grid error is above the plan's (ties half)."""
        return sum(1.0 if self.plan_grid < g else 0.5 if self.plan_grid == g else 0.0
                   for g in self.random_grid) / len(self.random_grid)


def compare(cells: list[Cell], new: str, budgets: list[int], seeds: int) -> list[Row]:
    """Plan vs random with `new` (a hardware_id) starting from its baselines only."""
    anchors = [c for c in cells if c.config.hardware_id == new and c.variant == "baseline"]
    pool = [c for c in cells if c.config.hardware_id == new and c.variant != "baseline"]
    start = [c for c in cells if c.config.hardware_id != new] + anchors
    p0 = fit(start)
    key = {(c.config.key(), c.variant): c for c in pool}
    configs = {c.config.key(): c.config for c in cells}
    costs = {c.variant: (c.params, c.macs) for c in cells}
    held_cells, held_variants = leave_one_cell_out(p0), leave_one_variant_out(p0)
    out = []
    for n in budgets:
        picks = design(p0, held_cells, held_variants, [(c.config.key(), c.variant) for c in start], list(key),
                       list(key), n, configs, costs, cells[0].model_id)
        chosen = [key[p.config, p.variant] for p in picks]
        rand = [random.Random(seed).sample(pool, n) for seed in range(seeds)]
        for target in TARGETS:
            pg, pr = score(start + chosen, [c for c in pool if c not in chosen], len(chosen), target)
            rs = [score(start + r, [c for c in pool if c not in r], n, target) for r in rand]
            out.append(Row(new, n, target, pg, pr, [g for g, _ in rs], [r for _, r in rs],
                           [f"{c.variant}/{c.config.runtime}" for c in chosen]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--budgets", default="2,4,6,8")
    ap.add_argument("--seeds", type=int, default=20)
    a = ap.parse_args()
    data = json.loads(a.fixture.read_text())
    cells = cells_from_rows(data["rows"])
    threads = {r["hardware_id"]: r.get("threads") or 0 for r in data["rows"]}
    budgets = [int(x) for x in a.budgets.split(",")]
    print(f"{a.fixture.name}: {len(cells)} cells; {a.seeds} random seeds a budget")
    print(f"{'new machine':>17} {'N':>2} {'target':>6} | {'plan grid':>9} {'rest':>5} | {'random grid':>11} "
          f"{'rest':>5} | {'seeds beaten':>12} | plan picked")
    rows: list[Row] = []
    for new in sorted(threads, key=lambda h: threads[h]):
        for r in compare(cells, new, budgets, a.seeds):
            rows.append(r)
            print(f"{new[:12]} ({threads[new]}t) {r.n:>2} {r.target:>6} | {r.plan_grid:9.1f} {r.plan_rest:5.1f} | "
                  f"{statistics.mean(r.random_grid):11.1f} {statistics.mean(r.random_rest):5.1f} | "
                  f"{100 * r.beaten:11.0f}% | {', '.join(r.picks)}")
    wins = sum(r.plan_grid <= statistics.mean(r.random_grid) for r in rows)
    print(f"plan's grid error <= random's mean in {wins} of {len(rows)} (machine, budget, target) triples; "
          f"mean plan grid {statistics.mean(r.plan_grid for r in rows):.2f} % vs random "
          f"{statistics.mean(statistics.mean(r.random_grid) for r in rows):.2f} %; plan beats "
          f"{100 * statistics.mean(r.beaten for r in rows):.0f} % of random seeds")


if __name__ == "__main__":
    main()
