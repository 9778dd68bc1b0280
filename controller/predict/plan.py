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
    a cell's own noise variance (log scale) where it is known to differ, else `priors.noise_var`.

    A target counts until it is measured (its measurement then stands in the grid). Parameters that only one
    cell's features name (its own misfit) are independent of everything else, so they are kept out of the joint
    covariance and added to that cell's variance: the covariance is over shared parameters only (configurations
    and variants), and the work per pick is n^2 + (number of candidates), n the shared parameters, not a
    covariance over every cell. Measured cells enter at once, in information form."""
    from controller.predict.linalg import spd_inverse

    def noise_of(cell: Cell) -> float:
        return priors.noise_var if noise is None else noise(cell)

    cells = list(dict.fromkeys([*measured, *candidates, *targets]))
    feats = {cell: {p: v for p, v in features(cell).items() if v} for cell in cells}
    uses: dict[Hashable, int] = {}
    for f in feats.values():
        for p in f:
            uses[p] = uses.get(p, 0) + 1
    shared = [p for p in uses if uses[p] > 1]
    index = {p: i for i, p in enumerate(shared)}
    n = len(shared)
    sparse = {c: [(index[p], v) for p, v in f.items() if p in index] for c, f in feats.items()}
    own = {c: sum(v * v * priors.of(p) for p, v in f.items() if p not in index) for c, f in feats.items()}

    # Posterior over the shared parameters after the measured cells: (prior^-1 + sum f f^T / d)^-1, where a measured
    # cell's own parameters (never to be observed again) add to its noise d.
    info = [[0.0] * n for _ in range(n)]
    for i, p in enumerate(shared):
        info[i][i] = 1.0 / max(priors.of(p), 1e-12)
    done = set(measured)
    for cell in done:
        d = noise_of(cell) + own[cell]
        for i, vi in sparse[cell]:
            for j, vj in sparse[cell]:
                info[i][j] += vi * vj / d
    cov = spd_inverse(info) if n else []

    def times(x: list[tuple[int, float]], m: list[list[float]]) -> list[float]:
        return [sum(row[i] * v for i, v in x) for row in m]  # m @ x

    def quad(x: list[tuple[int, float]], m: list[list[float]]) -> float:
        return sum(v * sum(m[i][j] * w for j, w in x) for i, v in x)  # x^T m x

    left = [c for c in dict.fromkeys(candidates) if c not in done]
    open_targets = [t for t in dict.fromkeys(targets) if t not in done]
    is_target = set(open_targets)
    # G = sum over open targets of f f^T (sparse); H = cov G cov, so that a candidate's summed squared covariance
    # with the targets' shared parts is f^T H f.
    gram: dict[int, dict[int, float]] = {}
    for t in open_targets:
        for i, vi in sparse[t]:
            row = gram.setdefault(i, {})
            for j, vj in sparse[t]:
                row[j] = row.get(j, 0.0) + vi * vj

    def g_times(vec: list[float]) -> list[float]:
        out = [0.0] * n
        for i, row in gram.items():
            out[i] = sum(w * vec[j] for j, w in row.items())
        return out

    cov_g = [g_times(col) for col in cov]  # rows of cov G (cov is symmetric)
    h = [[sum(cov_g[i][k] * cov[k][j] for k in range(n)) for j in range(n)] for i in range(n)]

    def remaining() -> float:
        return sum(quad(sparse[t], cov) + own[t] for t in open_targets)

    picks: list[Pick] = []
    for _ in range(budget):
        best, best_gain = None, 0.0
        for cand in left:
            q = quad(sparse[cand], cov)
            denom = noise_of(cand) + q + own[cand]
            shared_part = quad(sparse[cand], h)
            if cand in is_target:  # its own misfit covaries with itself: (q + own)^2 instead of q^2
                shared_part += 2 * q * own[cand] + own[cand] ** 2
            gain = shared_part / denom
            if gain > best_gain + 1e-15:
                best, best_gain = cand, gain
        if best is None:
            break
        # Observe `best`: cov' = cov - a a^T (a = cov f / sqrt(d)); drop it from the targets (G' = G - f f^T) and
        # update H' = cov' G' cov' = H - s s^T [if a target] - a b^T - b a^T + (a^T G' a) a a^T, b = cov G' a.
        f = sparse[best]
        s_vec = times(f, cov)
        d = noise_of(best) + sum(s_vec[i] * v for i, v in f) + own[best]
        a_vec = [x / d ** 0.5 for x in s_vec]
        if best in is_target:
            is_target.discard(best)
            open_targets.remove(best)
            for i, vi in f:
                for j, vj in f:
                    gram[i][j] -= vi * vj
            for i in range(n):
                hi, si = h[i], s_vec[i]
                if si:
                    for j in range(n):
                        hi[j] -= si * s_vec[j]
        ga = g_times(a_vec)
        b_vec = [sum(cov[i][k] * ga[k] for k in range(n)) for i in range(n)]
        aga = sum(x * y for x, y in zip(a_vec, ga, strict=True))
        for i in range(n):
            ai, bi, ci, hi = a_vec[i], b_vec[i], cov[i], h[i]
            for j in range(n):
                ci[j] -= ai * a_vec[j]
                hi[j] += -ai * b_vec[j] - bi * a_vec[j] + aga * ai * a_vec[j]
        left.remove(best)
        picks.append(Pick(best[0], best[1], best_gain, remaining()))
    return picks


def design(p: Predictor, held_cells: Sequence[Held], held_variants: Sequence[Held],
           measured: Sequence[Cell], candidates: Sequence[Cell], targets: Sequence[Cell], budget: int) -> list[Pick]:
    """`farm plan`'s design on a fitted predictor; cells are (configuration key, variant). It models what one
    measurement teaches the refit (model.py) about the cells asked about: the configuration's overall scale (the
    refit's unpenalised mean log ratio: `scale_var` wide), the variant's effect, and the cell's own misfit, which
    the grid carries until that cell is measured. Variances from held-out residuals (time, log): misfit =
    leave-one-cell-out residuals of cells whose variant stays measured elsewhere, less the repeats' noise;
    variant effect = leave-one-variant-out residuals beyond the cell ones.

    Per-kind rate errors are left out on purpose: with them the design chased the cells with the most extreme
    work shares, whose refit moved the other cells the wrong way (docs/prediction.md). Without them it spreads
    the picks over configurations by how many asked-about cells each one's scale moves. Among equally useful
    cells the first in `candidates` is taken."""
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

    return plan(measured, candidates, targets, budget, priors, features)
