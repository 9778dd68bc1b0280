"""Which measurements would teach the predictor most: a greedy A-optimal design on the model linearised
around its current fit. For configuration c and variant v,

    log y[c, v] ~ log f(c, v) + a[c] + sum_k s[v, k] d[c, k] + b[v] + m[c, v]

where a[c] is c's overall scale, s[v, k] kind k's share of v's predicted work cost on c (the shares sum to 1),
d[c, k] a relative error of c's rate for kind k, b[v] the variant's own effect and m[c, v] the cell's own
misfit; all get Gaussian priors. Measuring (c, v) observes that sum plus the repeats' noise. Each pick is the
candidate that most lowers the summed posterior variance of the target cells (the predictions asked about), by
a rank-one update of the covariance. The design needs no outcomes.

`plan` takes any linear features; `farm plan`'s `design` uses a[c], b[v] and m[c, v] only (no d: with the
rate errors in it, the design chased cells with extreme shares and did no better than random picks).
docs/prediction.md has the measured comparison with random picks (scripts/plan_vs_random.py)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.predict.conformal import Held
    from controller.predict.features import Config
    from controller.predict.model import Predictor

Cell = tuple[Hashable, Hashable]  # (configuration, variant)
Features = Callable[[Cell], Mapping[Hashable, float]]  # parameter -> coefficient of one cell's log value


@dataclass(frozen=True)
class Priors:
    """Variances on log scale: of a configuration's rate error per kind (parameters ("c", config, ...)), of a
    variant's effect ("v", ...), of noise; of a configuration's overall scale ("s", ...) and of one cell's own
    misfit ("m", ...), which only that cell's measurement reveals."""

    config_var: float
    variant_var: float
    noise_var: float
    scale_var: float = 1.0
    misfit_var: float = 0.0

    def of(self, param: Hashable) -> float:
        tag = param[0] if isinstance(param, tuple) and param else None
        return {"c": self.config_var, "s": self.scale_var, "m": self.misfit_var}.get(tag, self.variant_var)


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


def design(p: Predictor, held_cells: Sequence[Held], held_variants: Sequence[Held],
           measured: Sequence[Cell], candidates: Sequence[Cell], targets: Sequence[Cell], budget: int,
           configs: Mapping[Hashable, Config], costs: Mapping[str, tuple[int, int]], model_id: str) -> list[Pick]:
    """`farm plan`'s design on a fitted predictor; cells are (configuration key, variant). It models what one
    measurement teaches the refit (model.py) about the cells asked about: the configuration's overall scale (the
    refit's unpenalised mean log ratio: `scale_var` wide), the variant's effect, and the cell's own misfit, which
    the grid carries until that cell is measured. Variances from held-out residuals (time, log): misfit =
    leave-one-cell-out residuals of cells whose variant stays measured elsewhere, less the repeats' noise;
    variant effect = leave-one-variant-out residuals beyond the cell ones.

    Per-kind rate errors are left out on purpose: with them the design chased the cells with the most extreme
    work shares, whose refit moved the other cells the wrong way (docs/prediction.md). Without them it spreads
    the picks over configurations by how many asked-about cells each one's scale moves. Among equally useful
    cells it measures the most typical one: the smallest distance between the cell's work shares and the mean
    shares of the asked-about cells of its configuration (an atypical cell's ratio to the anchor transfers
    worst)."""
    def ms(v: Sequence[float]) -> float:
        return sum(x * x for x in v) / len(v) if v else 0.0

    noise = sorted(c.noise_log_var / max(c.repeats, 1) for c in p.cells)
    noise_var = max(noise[len(noise) // 2], 1e-6) if noise else 1e-2
    cell_errs = [h.log_error("time") for h in held_cells]
    known = [h.log_error("time") for h in held_cells if h.basis.startswith("cell")] or cell_errs
    misfit = max(ms(known) - noise_var, 1e-4)
    priors = Priors(config_var=0.0,
                    variant_var=max(ms([h.log_error("time") for h in held_variants]) - ms(cell_errs), 1e-4),
                    noise_var=noise_var, scale_var=1.0, misfit_var=misfit)

    def features(cell: Cell) -> dict[Hashable, float]:
        key, variant = cell
        return {("s", key): 1.0, ("v", variant): 1.0, ("m", key, variant): 1.0}

    shares = {cell: p.shares(model_id, str(cell[1]), configs[cell[0]], costs[str(cell[1])])
              for cell in dict.fromkeys([*candidates, *targets])}

    def atypical(cell: Cell) -> float:
        peers = [shares[t] for t in targets if t[0] == cell[0]] or [shares[cell]]
        kinds = {k for d in peers for k in d} | set(shares[cell])
        return sum((shares[cell].get(k, 0.0) - sum(d.get(k, 0.0) for d in peers) / len(peers)) ** 2 for k in kinds)

    # plan() keeps the first of equally good candidates, so the order is the tie-break.
    return plan(measured, sorted(candidates, key=atypical), targets, budget, priors, features)
