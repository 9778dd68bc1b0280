"""Does `farm plan` pick measurements that teach the predictor faster than random picks? Runs the back-test of
controller/predict/backtest.py on the real rows of tests/data/predict_rows.json, in every direction (each
hardware_id in turn is the new machine, starting from its baselines only), and prints, per budget and target,
the plan's errors beside the means of uniform random and of stratified random picks (`--seeds` each). A seed is
"beaten" when the plan's error is below that seed's (a tie counts half).

    python scripts/plan_vs_random.py [--fixture F] [--budgets 2,4,6,8] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from controller.predict.backtest import Row, compare
from controller.predict.features import cells_from_rows

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "predict_rows.json"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--budgets", default="2,4,6,8", help="comma-separated, each 1..(a machine's non-baseline cells)")
    ap.add_argument("--seeds", type=_positive, default=20)
    a = ap.parse_args()
    data = json.loads(a.fixture.read_text())
    cells = cells_from_rows(data["rows"])
    threads = {r["hardware_id"]: r.get("threads") or 0 for r in data["rows"]}
    try:
        budgets = [int(x) for x in a.budgets.split(",")]
    except ValueError:
        ap.error(f"--budgets {a.budgets!r}: give whole numbers, comma-separated")
    print(f"{a.fixture.name}: {len(cells)} cells; {a.seeds} random seeds a budget; errors in % (grid: median over "
          "the new machine's cells, a revealed one counting 0; mean: their mean; rest: median of the unrevealed)")
    print(f"{'new machine':>17} {'N':>2} {'target':>6} | {'plan grid':>9} {'mean':>5} {'rest':>5} | "
          f"{'random grid':>11} {'mean':>5} {'rest':>5} | {'strat. grid':>11} {'mean':>5} | {'beaten':>6} | "
          "plan picked")
    rows: list[Row] = []
    for new in sorted(threads, key=lambda h: threads[h]):
        try:
            found = compare(cells, new, budgets, a.seeds)
        except ValueError as exc:
            ap.error(str(exc))
        for r in found:
            rows.append(r)
            rnd, st = r.random, r.stratified
            print(f"{new[:12]} ({threads[new]}t) {r.n:>2} {r.target:>6} | {r.plan.grid:9.1f} {r.plan.mean:5.1f} "
                  f"{r.plan.rest:5.1f} | {statistics.mean(s.grid for s in rnd):11.1f} "
                  f"{statistics.mean(s.mean for s in rnd):5.1f} {statistics.mean(s.rest for s in rnd):5.1f} | "
                  f"{statistics.mean(s.grid for s in st):11.1f} {statistics.mean(s.mean for s in st):5.1f} | "
                  f"{100 * r.beaten():5.0f}% | {', '.join(r.picks)}")
    for by in ("grid", "mean", "rest"):
        plan = [getattr(r.plan, by) for r in rows]
        rnd = [statistics.mean(getattr(s, by) for s in r.random) for r in rows]
        strat = [statistics.mean(getattr(s, by) for s in r.stratified) for r in rows]
        below = sum(p < x for p, x in zip(plan, rnd, strict=True))
        ties = sum(p == x for p, x in zip(plan, rnd, strict=True))
        print(f"{by:>4}: plan {statistics.mean(plan):.2f} %, random {statistics.mean(rnd):.2f} %, stratified random "
              f"{statistics.mean(strat):.2f} %; plan below random's mean in {below} of {len(rows)} rows "
              f"({ties} tied); plan beats {100 * statistics.mean(r.beaten(by) for r in rows):.0f} % of random seeds")


if __name__ == "__main__":
    main()
