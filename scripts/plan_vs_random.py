"""Does `farm plan` pick measurements that teach the predictor faster than random picks? Runs the back-test of
controller/predict/backtest.py on the real rows of tests/data/predict_rows.json, in every direction (each
hardware_id in turn is the new machine, starting from its baselines only), and prints, per budget and target,
the plan's grid error beside the mean of uniform random and of stratified random picks (`--seeds` each). A seed
is "beaten" when the plan's grid error is below that seed's (a tie counts half).

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
    print(f"{a.fixture.name}: {len(cells)} cells; {a.seeds} random seeds a budget; grid and rest errors in %")
    print(f"{'new machine':>17} {'N':>2} {'target':>6} | {'plan grid':>9} {'rest':>5} | {'random grid':>11} "
          f"{'rest':>5} | {'stratified':>10} | {'seeds beaten':>12} | plan picked")
    rows: list[Row] = []
    for new in sorted(threads, key=lambda h: threads[h]):
        for r in compare(cells, new, budgets, a.seeds):
            rows.append(r)
            print(f"{new[:12]} ({threads[new]}t) {r.n:>2} {r.target:>6} | {r.plan_grid:9.1f} {r.plan_rest:5.1f} | "
                  f"{statistics.mean(r.random_grid):11.1f} {statistics.mean(r.random_rest):5.1f} | "
                  f"{statistics.mean(r.stratified_grid):10.1f} | {100 * r.beaten:11.0f}% | {', '.join(r.picks)}")
    wins = sum(r.plan_grid <= statistics.mean(r.random_grid) for r in rows)
    print(f"plan's grid error <= random's mean in {wins} of {len(rows)} (machine, budget, target) triples; "
          f"mean grid error: plan {statistics.mean(r.plan_grid for r in rows):.2f} %, random "
          f"{statistics.mean(statistics.mean(r.random_grid) for r in rows):.2f} %, stratified random "
          f"{statistics.mean(statistics.mean(r.stratified_grid) for r in rows):.2f} %; plan beats "
          f"{100 * statistics.mean(r.beaten for r in rows):.0f} % of random seeds")


if __name__ == "__main__":
    main()
