"""Which measurements would teach the predictor most: a greedy A-optimal design on the model linearised
around its current fit. For configuration c and variant v,

    log y[c, v] ~ log f(c, v) + sum_k s[v, k] d[c, k] + b[v]

where s[v, k] is kind k's share of v's predicted work cost on c (the shares sum to 1), d[c, k] a relative error
of c's rate for kind k, and b[v] the variant's own effect; d and b get Gaussian priors. Measuring (c, v)
observes that sum plus noise. Each pick is the candidate that most lowers the summed posterior variance of the
target cells (the predictions asked about), by a rank-one update of the covariance: cells whose work mixes
the kinds the targets need, on the targets' machines, teach most. The design needs no outcomes."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

Cell = tuple[Hashable, Hashable]  # (configuration, variant)
Features = Callable[[Cell], Mapping[Hashable, float]]  # parameter -> coefficient of one cell's log value


@dataclass(frozen=True)
class Priors:
    """Variances on log scale: of a configuration's rate errors (per kind), of a variant's effect, of noise."""

    config_var: float
    variant_var: float
    noise_var: float

    def of(self, param: Hashable) -> float:
        return self.config_var if isinstance(param, tuple) and param[:1] == ("c",) else self.variant_var


@dataclass(frozen=True)
class Pick:
    """A cell to measure and how much it lowers the targets' summed variance (log scale squared)."""

    config: Hashable
    variant: Hashable
    gain: float
    remaining_var: float


def additive(cell: Cell) -> dict[Hashable, float]:
    """The simplest features: one effect per configuration and one per variant (no work shares)."""
    return {("c", cell[0]): 1.0, ("v", cell[1]): 1.0}


def plan(measured: Sequence[Cell], candidates: Sequence[Cell], targets: Sequence[Cell], budget: int,
         priors: Priors, features: Features = additive, noise: Callable[[Cell], float] | None = None) -> list[Pick]:
    """Up to `budget` picks among `candidates` (no repeats), greedily; stops early when no pick helps. `noise`:
    a cell's own noise variance (log scale) where it is known to differ, else `priors.noise_var`."""
    def noise_of(cell: Cell) -> float:
        return priors.noise_var if noise is None else noise(cell)

    feats = {cell: dict(features(cell)) for cell in dict.fromkeys([*measured, *candidates, *targets])}
    params = list(dict.fromkeys(p for f in feats.values() for p in f))
    index = {p: i for i, p in enumerate(params)}
    n = len(params)
    cov = [[0.0] * n for _ in range(n)]
    for i, p in enumerate(params):
        cov[i][i] = priors.of(p)
    sparse = {cell: [(index[p], v) for p, v in f.items() if v] for cell, f in feats.items()}

    def times(x: list[tuple[int, float]]) -> list[float]:
        return [sum(row[i] * v for i, v in x) for row in cov]  # cov @ x

    def observe(cell: Cell) -> None:
        s = times(sparse[cell])
        denom = noise_of(cell) + sum(s[i] * v for i, v in sparse[cell])
        for r in range(n):
            if s[r]:
                f = s[r] / denom
                row = cov[r]
                for c in range(n):
                    row[c] -= f * s[c]

    def var(cell: Cell) -> float:
        x = sparse[cell]
        return sum(v * sum(cov[i][j] * w for j, w in x) for i, v in x)

    for cell in measured:
        observe(cell)
    done = set(measured)
    left = [c for c in dict.fromkeys(candidates) if c not in done]
    picks: list[Pick] = []
    for _ in range(budget):
        best, best_gain = None, 0.0
        for cand in left:
            s = times(sparse[cand])
            denom = noise_of(cand) + sum(s[i] * v for i, v in sparse[cand])
            gain = sum(sum(s[i] * v for i, v in sparse[t]) ** 2 for t in targets) / denom
            if gain > best_gain + 1e-15:
                best, best_gain = cand, gain
        if best is None:
            break
        observe(best)
        left.remove(best)
        picks.append(Pick(best[0], best[1], best_gain, sum(var(t) for t in targets)))
    return picks


def misfit_noise(errors: Mapping[Hashable, Sequence[float]], floor: float) -> Callable[[Cell], float]:
    """A cell's noise as its variant's mean squared held-out log error on other machines (the model's misfit and
    the measurement noise together), at least `floor`; the median variant's where the variant has none."""
    per = {v: sum(e * e for e in es) / len(es) for v, es in errors.items() if es}
    typical = sorted(per.values())[len(per) // 2] if per else floor
    return lambda cell: max(per.get(cell[1], typical), floor)


def priors_from(cell_log_errors: Sequence[float], variant_log_errors: Sequence[float],
                noise_log_var: float) -> Priors:
    """Priors from validation: configuration rate errors as large as leave-one-cell-out errors, a variant
    effect as large as leave-one-variant-out errors beyond those, noise as the repeats' spread."""
    def ms(v: Sequence[float]) -> float:
        return sum(x * x for x in v) / len(v) if v else 0.0

    cell = ms(cell_log_errors)
    variant = max(ms(variant_log_errors) - cell, 0.0)
    return Priors(config_var=max(cell, 1e-4), variant_var=max(variant, 1e-4),
                  noise_var=max(noise_log_var, 1e-6) if math.isfinite(noise_log_var) else 1e-2)
