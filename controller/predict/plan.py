"""Which measurements would teach the predictor most: a greedy A-optimal design on the additive part of the
model (log y = physics + a_c + b_v), whose parameters get Gaussian priors: a configuration effect a_c, a
variant effect b_v, and measurement noise. Measuring cell (c, v) observes a_c + b_v; each pick is the
candidate that most lowers the summed posterior variance of the target cells (the predictions asked about),
by a rank-one update of the covariance. The design needs no outcomes, only which cells are measured."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Priors:
    """Variances on log scale: of a configuration's effect, of a variant's effect, of one measurement's noise."""

    config_var: float
    variant_var: float
    noise_var: float


@dataclass(frozen=True)
class Pick:
    """A cell to measure and how much it lowers the targets' summed variance (log scale squared)."""

    config: Hashable
    variant: Hashable
    gain: float
    remaining_var: float


def plan(measured: Sequence[tuple[Hashable, Hashable]], candidates: Sequence[tuple[Hashable, Hashable]],
         targets: Sequence[tuple[Hashable, Hashable]], budget: int, priors: Priors) -> list[Pick]:
    """Up to `budget` picks among `candidates` (no repeats), greedily; stops early when no pick helps."""
    names: list[tuple[str, Hashable]] = []
    index: dict[tuple[str, Hashable], int] = {}
    for c, v in [*measured, *candidates, *targets]:
        for key in (("c", c), ("v", v)):
            if key not in index:
                index[key] = len(names)
                names.append(key)
    n = len(names)
    cov = [[0.0] * n for _ in range(n)]
    for i, (kind, _) in enumerate(names):
        cov[i][i] = priors.config_var if kind == "c" else priors.variant_var

    def idx(cell: tuple[Hashable, Hashable]) -> tuple[int, int]:
        return index["c", cell[0]], index["v", cell[1]]

    def observe(cell: tuple[Hashable, Hashable]) -> None:
        i, j = idx(cell)
        s = [cov[r][i] + cov[r][j] for r in range(n)]  # cov @ x, x the indicator of a_c + b_v
        denom = priors.noise_var + s[i] + s[j]
        for r in range(n):
            if s[r]:
                f = s[r] / denom
                row = cov[r]
                for col in range(n):
                    row[col] -= f * s[col]

    def target_var(cell: tuple[Hashable, Hashable]) -> float:
        i, j = idx(cell)
        return cov[i][i] + cov[j][j] + 2 * cov[i][j]

    for cell in measured:
        observe(cell)
    left = [c for c in dict.fromkeys(candidates) if c not in set(measured)]
    picks: list[Pick] = []
    tidx = [idx(t) for t in targets]
    for _ in range(budget):
        best, best_gain = None, 0.0
        for cand in left:
            i, j = idx(cand)
            denom = priors.noise_var + cov[i][i] + cov[j][j] + 2 * cov[i][j]
            gain = sum((cov[a][i] + cov[a][j] + cov[b][i] + cov[b][j]) ** 2 for a, b in tidx) / denom
            if gain > best_gain + 1e-15:
                best, best_gain = cand, gain
        if best is None:
            break
        observe(best)
        left.remove(best)
        picks.append(Pick(best[0], best[1], best_gain, sum(target_var(t) for t in targets)))
    return picks


def priors_from(cell_log_errors: Sequence[float], variant_log_errors: Sequence[float],
                noise_log_var: float) -> Priors:
    """Priors from validation: a configuration effect as large as leave-one-cell-out errors, a variant effect
    as large as leave-one-variant-out errors (beyond the cell errors), noise as the repeats' spread."""
    def ms(v: Sequence[float]) -> float:
        return sum(x * x for x in v) / len(v) if v else 0.0

    cell = ms(cell_log_errors)
    variant = max(ms(variant_log_errors) - cell, 0.0)
    return Priors(config_var=max(cell, 1e-4), variant_var=max(variant, 1e-4),
                  noise_var=max(noise_log_var, 1e-6 if math.isfinite(noise_log_var) else 1e-2))
