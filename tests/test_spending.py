"""Error-spending boundaries against published values (R's rpact and gsDesign: Lan-DeMets
spending, one-sided alpha 0.025, five equally spaced looks) and their defining property."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regbench.design import spending

FIVE_LOOKS = (0.2, 0.4, 0.6, 0.8, 1.0)


@pytest.mark.parametrize(("kind", "published"), [
    (spending.OBRIEN_FLEMING, (4.877, 3.357, 2.680, 2.290, 2.031)),
    (spending.POCOCK, (2.438, 2.427, 2.410, 2.397, 2.386)),
])
def test_boundaries_are_the_published_ones(kind, published):
    assert spending.boundaries(FIVE_LOOKS, 0.025, kind) == pytest.approx(published, abs=6e-4)


def test_a_single_look_is_the_fixed_design():
    assert spending.boundaries((1.0,), 0.025)[0] == pytest.approx(scipy_stats.norm.isf(0.025))


def test_the_boundaries_spend_alpha_by_the_last_look():
    """Simulated Brownian motion at the looks: crossing any boundary has probability alpha."""
    fractions = (0.35, 0.5, 0.65, 0.8, 0.95, 1.0)
    c = np.array(spending.boundaries(fractions, 0.05))
    rng = np.random.default_rng(0)
    steps = rng.standard_normal((400_000, len(fractions))) * np.sqrt(np.diff((0, *fractions)))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    assert (z >= c).any(axis=1).mean() == pytest.approx(0.05, abs=0.002)


@pytest.mark.parametrize(("fractions", "alpha", "message"), [
    ((0.5, 0.5, 1.0), 0.05, "fractions must increase"),
    ((0.5, 1.2), 0.05, "fractions must increase"),
    ((1.0,), 0.0, "alpha must be in"),
])
def test_bad_plans_are_refused(fractions, alpha, message):
    with pytest.raises(ValueError, match=message):
        spending.boundaries(fractions, alpha)


def test_the_t_boundary_has_the_z_boundarys_tail():
    t = spending.t_boundary(2.5, 7)
    assert scipy_stats.t.sf(t, 7) == pytest.approx(scipy_stats.norm.sf(2.5))
    assert spending.t_boundary(np.inf, 7) == np.inf


def test_t_boundaries_spend_alpha_on_t_statistics():
    """Independent simulated null studies (not the boundaries' own) cross the two-sided t
    boundaries of the default plan at the rate spent, where the z boundaries carried to the t
    scale one look at a time cross more often."""
    looks = (7, 10, 13, 16, 19, 20)
    alpha = 0.05 / 4
    c = spending.t_boundaries(looks, 20, alpha, sides=2)
    z = spending.boundaries(tuple(n / 20 for n in looks), alpha / 2)
    d = np.random.default_rng(5).standard_normal((200_000, 20))
    exact, shortcut = np.zeros(len(d), bool), np.zeros(len(d), bool)
    for n, c_t, c_z in zip(looks, c, z, strict=True):
        x = d[:, :n]
        t = np.abs(x.mean(axis=1) / (x.std(axis=1, ddof=1) / np.sqrt(n)))
        exact |= t >= c_t
        shortcut |= t >= spending.t_boundary(c_z, n - 1)
    assert exact.mean() == pytest.approx(alpha, abs=0.0008)
    assert shortcut.mean() > exact.mean()


def test_t_boundaries_approach_the_z_boundaries_with_many_seeds():
    c = spending.t_boundaries((400, 800, 1200, 1600, 2000), 2000, 0.025)
    assert c[1:] == pytest.approx((3.357, 2.680, 2.290, 2.031), abs=0.03)
    assert spending.t_boundaries((10,), 10, 0.05, sides=2)[0] == pytest.approx(
        scipy_stats.t.isf(0.025, 9))
