"""Does `farm plan` pick measurements that teach the predictor faster than random picks? A back-test on stored
cells: each hardware_id in turn is the "new machine", which starts with only its baselines measured (one anchor
per runtime) while the other machines are fully measured. For a budget N, `farm plan`'s design (plan.design, the
call `farm plan` makes), uniform random picks and proportionally stratified random picks (N spread over the new
machine's configurations by how many cells each has, random within each) each choose N of the new machine's
cells; their real measurements are revealed, the predictor is refitted, and the new machine's grid is scored:

  grid  - median absolute % error over ALL the new machine's non-anchor cells, a revealed cell counting as exact
  mean  - the same cells' mean absolute % error (the median says nothing once half the cells are revealed)
  rest  - median absolute % error over the cells still unmeasured

Pure Python on the predictor's own code: no torch, no store."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from controller.predict.conformal import leave_one_cell_out, leave_one_variant_out
from controller.predict.features import Cell
from controller.predict.model import fit
from controller.predict.plan import design

TARGETS = ("time", "energy")


@dataclass(frozen=True)
class Score:
    """APE in % over a new machine's cells after some were revealed (they count 0 in grid and mean)."""

    grid: float
    mean: float
    rest: float


def score(known: Sequence[Cell], hidden: Sequence[Cell], revealed: int, target: str) -> Score:
    """The hidden cells predicted from `known`; `revealed` cells count as exact."""
    p = fit(list(known))
    errs = []
    for c in hidden:
        y = c.time_s if target == "time" else c.energy_j
        pred = p.point(c.model_id, c.variant, c.config, (c.params, c.macs))[target]
        errs.append(100 * abs(pred - y) / y)
    every = errs + [0.0] * revealed
    return Score(statistics.median(every), statistics.mean(every), statistics.median(errs) if errs else 0.0)


@dataclass
class Row:
    """One (new machine, budget, target): the plan's scores, each seed's random scores, the plan's picks."""

    new: str
    n: int
    target: str
    plan: Score
    random: list[Score]
    stratified: list[Score]
    picks: list[str]

    def beaten(self, by: str = "grid") -> float:
        """Fraction of uniform random seeds whose score (`grid`, `mean` or `rest`) is above the plan's (ties
        half)."""
        mine = getattr(self.plan, by)
        return sum(1.0 if mine < x else 0.5 if mine == x else 0.0
                   for x in (getattr(r, by) for r in self.random)) / len(self.random)


def stratified(pool: Sequence[Cell], n: int, rng: random.Random) -> list[Cell]:
    """n cells of `pool`, spread over its configurations in proportion to their cells (largest remainder)."""
    by: dict[str, list[Cell]] = {}
    for c in pool:
        by.setdefault(c.config.key(), []).append(c)
    keys = sorted(by)
    quota = {k: n * len(by[k]) / len(pool) for k in keys}
    alloc = {k: int(quota[k]) for k in keys}
    for k in sorted(keys, key=lambda k: alloc[k] - quota[k])[: n - sum(alloc.values())]:
        alloc[k] += 1
    return [c for k in keys for c in rng.sample(by[k], alloc[k])]


def compare(cells: Sequence[Cell], new: str, budgets: Sequence[int], seeds: int) -> list[Row]:
    """Plan vs random with `new` (a hardware_id) starting from its baselines only. ValueError for a budget outside
    1..(the new machine's non-anchor cells) or fewer than 1 seed."""
    anchors = [c for c in cells if c.config.hardware_id == new and c.variant == "baseline"]
    pool = [c for c in cells if c.config.hardware_id == new and c.variant != "baseline"]
    if seeds < 1:
        raise ValueError("seeds must be at least 1")
    bad = [n for n in budgets if not 1 <= n <= len(pool)]
    if bad:
        raise ValueError(f"budget(s) {bad} outside 1..{len(pool)} (the cells of {new[:12]} besides its baselines)")
    start = [c for c in cells if c.config.hardware_id != new] + anchors
    p0 = fit(start)
    key = {(c.config.key(), c.variant): c for c in pool}
    held_cells, held_variants = leave_one_cell_out(p0), leave_one_variant_out(p0)
    out = []
    for n in budgets:
        picks = design(p0, held_cells, held_variants, [(c.config.key(), c.variant) for c in start], list(key),
                       list(key), n)
        chosen = [key[p.config, p.variant] for p in picks]
        rand = [random.Random(seed).sample(pool, n) for seed in range(seeds)]
        strat = [stratified(pool, n, random.Random(seed)) for seed in range(seeds)]
        for target in TARGETS:
            out.append(Row(new, n, target, score(start + chosen, [c for c in pool if c not in chosen], len(chosen),
                                                 target),
                           [score(start + r, [c for c in pool if c not in r], n, target) for r in rand],
                           [score(start + r, [c for c in pool if c not in r], n, target) for r in strat],
                           [f"{c.variant}/{c.config.runtime}" for c in chosen]))
    return out
