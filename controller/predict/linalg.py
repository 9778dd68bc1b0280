"""The little linear algebra the predictor needs, in pure Python (the controller has no numpy): its systems
have a handful of unknowns."""

from __future__ import annotations

from collections.abc import Sequence

Matrix = list[list[float]]


def solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """x with a x = b, by Gaussian elimination with partial pivoting; `a` square and non-singular."""
    n = len(b)
    m = [list(map(float, row)) + [float(v)] for row, v in zip(a, b, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-300:
            raise ValueError("singular system")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f:
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def inverse(a: Sequence[Sequence[float]]) -> Matrix:
    """The inverse of a square non-singular matrix (column by column)."""
    n = len(a)
    cols = [solve(a, [1.0 if i == j else 0.0 for i in range(n)]) for j in range(n)]
    return [[cols[j][i] for j in range(n)] for i in range(n)]


def nnls(a: Sequence[Sequence[float]], b: Sequence[float], *, ridge: float = 0.0, tol: float = 1e-10) -> list[float]:
    """x >= 0 minimising |a x - b|^2 + ridge |x|^2 (Lawson-Hanson active set on the normal equations; columns
    are scaled to unit norm first, so `ridge` is relative and badly scaled work counts do not matter). An
    all-zero column gets 0."""
    k = len(a[0]) if a else 0
    norms = [sum(row[j] ** 2 for row in a) ** 0.5 for j in range(k)]
    cols = [j for j in range(k) if norms[j] > 0]
    s = [[row[j] / norms[j] for j in cols] for row in a]
    n = len(cols)
    g = [[sum(r[i] * r[j] for r in s) + (ridge if i == j else 0.0) for j in range(n)] for i in range(n)]
    h = [sum(r[i] * v for r, v in zip(s, b, strict=True)) for i in range(n)]
    x = [0.0] * n
    active: list[int] = []  # the free (positive) set

    def gradient() -> list[float]:
        return [h[i] - sum(g[i][j] * x[j] for j in range(n)) for i in range(n)]

    for _ in range(3 * n + 3):
        grad = gradient()
        free = [i for i in range(n) if i not in active and grad[i] > tol]
        if not free:
            break
        active.append(max(free, key=lambda i: grad[i]))
        while True:
            z = solve([[g[i][j] for j in active] for i in active], [h[i] for i in active])
            if all(v > tol for v in z):
                for i, v in zip(active, z, strict=True):
                    x[i] = v
                break
            alpha = min(x[i] / (x[i] - v) for i, v in zip(active, z, strict=True) if v <= tol)
            for i, v in zip(active, z, strict=True):
                x[i] += alpha * (v - x[i])
            active = [i for i in active if x[i] > tol]
            for i in range(n):
                if i not in active:
                    x[i] = 0.0
            if not active:
                break
    out = [0.0] * k
    for i, j in enumerate(cols):
        out[j] = x[i] / norms[j]
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, linear between order statistics."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def spd_inverse(a: Sequence[Sequence[float]]) -> Matrix:
    """The inverse of a symmetric positive-definite matrix, by Cholesky (n^3 / 3 multiply-adds each for the
    factor, its inverse and their product); ValueError if `a` is not positive definite."""
    n = len(a)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        li = low[i]
        for j in range(i + 1):
            lj = low[j]
            s = a[i][j] - sum(li[k] * lj[k] for k in range(j))
            if i == j:
                if s <= 0.0:
                    raise ValueError("matrix is not positive definite")
                li[i] = s ** 0.5
            else:
                li[j] = s / lj[j]
    inv = [[0.0] * n for _ in range(n)]  # inv = low^-1, lower triangular
    for i in range(n):
        inv[i][i] = 1.0 / low[i][i]
        for j in range(i):
            inv[i][j] = -sum(low[i][k] * inv[k][j] for k in range(j, i)) / low[i][i]
    # a^-1 = inv^T inv: entry (i, j) sums over k >= max(i, j)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            v = sum(inv[k][i] * inv[k][j] for k in range(i, n))
            out[i][j] = out[j][i] = v
    return out
