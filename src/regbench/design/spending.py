"""Group-sequential boundaries by error spending (Lan and DeMets 1983, "Discrete sequential
boundaries for clinical trials", Biometrika 70; Jennison and Turnbull 2000, "Group Sequential
Methods with Applications to Clinical Trials", ch. 7).

A one-sided test of level ``alpha`` looked at K times, at information fractions
0 < t_1 < ... < t_K = 1 (seeds so far / the budget), with standardised statistics Z_k that are
jointly normal with corr(Z_i, Z_j) = sqrt(t_i / t_j) (i <= j), rejects at the first look with
Z_k >= c_k. The boundaries spend the error rate as a function alpha*(t) says:

    P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = alpha*(t_k) - alpha*(t_{k-1}),

so P(reject at some look) = alpha*(1) = alpha, whatever the looks. The spending functions:

* O'Brien-Fleming type: alpha*(t) = 2 - 2 Phi(Phi^-1(1 - alpha / 2) / sqrt(t)) (almost nothing
  early, nearly the fixed design's boundary at the end);
* Pocock type: alpha*(t) = alpha ln(1 + (e - 1) t) (even spending, wider last boundary).

The rectangle probabilities are scipy's multivariate normal CDF (Genz's algorithm, with a
fixed generator so a boundary is the same on every call). tests/test_spending.py holds the
O'Brien-Fleming-type boundaries of five equally spaced looks at alpha = 0.025 to the values
R's rpact and gsDesign publish (4.877, 3.357, 2.680, 2.290, 2.031).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize
from scipy import stats as scipy_stats

OBRIEN_FLEMING, POCOCK = "obrien-fleming", "pocock"
SPENDING = (OBRIEN_FLEMING, POCOCK)
_ACCURACY = 1e-7  # absolute error of each rectangle probability


def spent(fraction: float, alpha: float, kind: str) -> float:
    """alpha*(t): the error rate spent by information fraction ``fraction``, as the module's
    docstring defines it for ``kind``."""
    if kind == OBRIEN_FLEMING:
        return float(2 * scipy_stats.norm.sf(scipy_stats.norm.isf(alpha / 2) / np.sqrt(fraction)))
    if kind == POCOCK:
        return float(alpha * np.log1p((np.e - 1) * fraction))
    raise ValueError(f"spending: {kind!r} is not one of {', '.join(SPENDING)}")


def _crossing(bounds: tuple[float, ...], c: float, fractions: tuple[float, ...]) -> float:
    """P(Z_j < bounds_j for the looks before the last, Z_last >= c)."""
    t = np.asarray(fractions)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    upper = np.array([*bounds, np.inf])
    lower = np.array([-np.inf] * len(bounds) + [c])
    return float(scipy_stats.multivariate_normal.cdf(
        upper, mean=np.zeros(len(t)), cov=cov, lower_limit=lower, abseps=_ACCURACY, releps=0,
        maxpts=200_000 * len(t), rng=np.random.default_rng(0)))


@lru_cache(maxsize=256)
def boundaries(fractions: tuple[float, ...], alpha: float, kind: str = OBRIEN_FLEMING
               ) -> tuple[float, ...]:
    """c_1 .. c_K (z scale) of a one-sided level-``alpha`` test looked at at ``fractions``
    (increasing, the last 1 or less), as the module's docstring says."""
    if not 0 < alpha < 1:
        raise ValueError(f"spending: alpha must be in (0, 1), not {alpha}")
    steps = np.diff((0.0, *fractions))
    if (steps <= 0).any() or fractions[-1] > 1:
        raise ValueError(f"spending: fractions must increase within (0, 1], not {fractions}")
    found: list[float] = []
    previous = 0.0
    for k, fraction in enumerate(fractions):
        now = spent(fraction, alpha, kind)
        increment = now - previous
        previous = now
        if k == 0:
            found.append(float(scipy_stats.norm.isf(increment)))
            continue
        def excess(c: float, bounds=tuple(found), looks=fractions[:k + 1], target=increment):
            return _crossing(bounds, c, looks) - target

        if excess(40.0) >= 0:  # nothing left to spend at this look
            found.append(np.inf)
            continue
        found.append(float(optimize.brentq(excess, -10.0, 40.0, xtol=1e-6)))
    return tuple(found)


PATHS = 2**20  # null studies behind each t boundary: Monte Carlo sd of a 1% rate, 1e-4


@lru_cache(maxsize=256)
def t_boundaries(sizes: tuple[int, ...], budget: int, alpha: float, kind: str = OBRIEN_FLEMING,
                 sides: int = 1, paths: int = PATHS) -> tuple[float, ...]:
    """Boundaries for the one-sample t statistic T_k = mean / (sd / sqrt(n_k)) looked at after
    ``sizes`` n_1 < ... < n_K observations (of ``budget``: fractions n_k / budget), spending
    ``alpha`` as ``spent`` says, on |T_k| when ``sides`` is 2 (symmetric) else on T_k.

    Under the null and normal data the joint law of (T_1, ..., T_K) is free of the mean and sd,
    but not the z statistics' (the sd is estimated at every look), so carrying each z boundary
    to the t scale on its own (``t_boundary``) spends a little more than alpha (about 6% more
    over the default plan). These are found on ``paths`` simulated null studies instead (a
    fixed generator: the same boundaries on every call): between looks, m new N(0, 1) draws add
    N(0, m) to the sum and chi2(m - 1) + (their sum)^2 / m to the sum of squares, and c_k is
    the quantile at which the share of studies first crossing at look k is alpha*(t_k) -
    alpha*(t_{k-1}) (at the first look, exactly: T_1 is t with n_1 - 1 degrees of freedom)."""
    steps = np.diff((0, *sizes))
    if sizes[0] < 2 or (steps <= 0).any() or sizes[-1] > budget:
        raise ValueError(f"spending: sizes must increase from 2 to at most {budget}, "
                         f"not {sizes}")
    rng = np.random.default_rng(0)
    total, squares = np.zeros(paths), np.zeros(paths)
    alive = np.ones(paths, dtype=bool)
    found, previous = [], 0.0
    for n, m in zip(sizes, steps, strict=True):
        added = rng.standard_normal(paths) * np.sqrt(m)
        squares += added**2 / m + (rng.chisquare(m - 1, paths) if m > 1 else 0.0)
        total += added
        t = (total / n) / np.sqrt((squares - total**2 / n) / (n - 1) / n)
        statistic = np.abs(t) if sides == 2 else t
        now = spent(n / budget, alpha, kind)
        crossing = int(round((now - previous) * paths))
        candidates = np.sort(statistic[alive])[::-1]
        if not found:  # the first look alone: T_1 is t with n_1 - 1 df, exactly
            c = float(scipy_stats.t.isf((now - previous) / sides, n - 1))
        elif crossing < 1 or not len(candidates):
            c = np.inf
        else:
            c = float(candidates[min(crossing, len(candidates)) - 1])
        previous = now
        found.append(c)
        alive &= statistic < c
    return tuple(found)


def t_boundary(z: float, df: int) -> float:
    """The boundary on the t scale with ``df`` degrees of freedom that has the z boundary's
    one-sided tail probability (the usual conversion for an unknown variance, Jennison and
    Turnbull 2000, section 3.8); ``z`` may itself be a t boundary's normal equivalent."""
    return float(scipy_stats.t.isf(scipy_stats.norm.sf(z), df)) if np.isfinite(z) else np.inf
