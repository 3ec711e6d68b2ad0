"""The sequential design: its boundary, its decisions on hand-made cases, and its error rates,
coverage, seeds and power over simulated studies with the real schedule (seconds, no
training)."""

import numpy as np
import pytest

from regbench.analysis import stats
from regbench.design import sequential, simulation
from regbench.locations import PROJECT_ROOT


def by_seed(values):
    return dict(enumerate(values))


@pytest.mark.parametrize("n", [8, 11, 20, 40])
def test_the_boundary_is_where_the_bayes_factor_reaches_one_over_alpha(n):
    alpha = 0.05 / 4
    c = sequential.critical_t(n, alpha)
    assert sequential.log_bayes_factor(c, n) == pytest.approx(np.log(1 / alpha))
    assert c > stats_t_critical(n, alpha)  # wider than the fixed-sample t: the price of looks


def stats_t_critical(n, alpha):
    from scipy import stats as scipy_stats

    return scipy_stats.t.ppf(1 - alpha / 2, n - 1)


def test_too_few_seeds_decide_nothing():
    assert sequential.critical_t(5, 0.05 / 4) == np.inf  # (1 + 5)^2 = 36 < 80
    look = sequential.decide("m", by_seed([5.0, 5.1, 4.9, 5.2, 5.0]), by_seed([0.0] * 5), True,
                             1.0, family=4)
    assert look.decision == sequential.CONTINUE and look.low == -np.inf


def test_schedule_looks_and_refusals():
    assert sequential.Schedule().looks() == [5, 8, 11, 14, 17, 20]
    assert sequential.Schedule(5, 4, 15).looks() == [5, 9, 13, 15]
    with pytest.raises(ValueError, match="schedule"):
        sequential.Schedule(first=1)


def test_decisions_on_hand_made_studies():
    rng = np.random.default_rng(0)
    reference = rng.normal(0.97, 0.004, 14)
    better = sequential.decide("test_accuracy", by_seed(reference + 0.003 + rng.normal(
        0, 0.0003, 14)), by_seed(reference), True, 0.001, family=4)
    assert better.decision == stats.BETTER and better.low > 0
    worse_loss = sequential.decide("test_data_loss", by_seed(reference + 0.003),
                                   by_seed(reference + rng.normal(0, 0.0003, 14)), False, 0.001,
                                   family=4)
    assert worse_loss.decision == stats.WORSE
    close = reference + rng.normal(0, 0.00005, 14)
    equivalent = sequential.decide("test_accuracy", by_seed(close), by_seed(reference), True,
                                   0.001, family=4)
    assert equivalent.decision == stats.EQUIVALENT and -0.001 < equivalent.low
    same = sequential.decide("test_accuracy", by_seed(reference), by_seed(reference), True,
                             0.001, family=4, identical=True)
    assert same.decision == sequential.IDENTICAL
    counts = reference[:5]  # equal on this metric only: tested, and 5 seeds cannot decide
    alone = sequential.decide("test_accuracy", by_seed(counts), by_seed(counts), True, 0.001,
                              family=4)
    assert alone.decision == sequential.CONTINUE
    assert (alone.low, alone.high) == (-np.inf, np.inf)  # the boundary is infinite at 5 seeds


def test_zero_spread_is_held_back_by_the_sign_flips():
    """Every difference the same: the CS is a point, but 8 seeds' two-sided sign-flip floor,
    2/256, is above 0.05/4 only at 7 seeds or fewer; at 8 it decides, at 7 it cannot."""
    seven = sequential.decide("m", by_seed([1.0] * 7), by_seed([0.0] * 7), True, 0.1, family=4)
    eight = sequential.decide("m", by_seed([1.0] * 8), by_seed([0.0] * 8), True, 0.1, family=4)
    assert seven.decision == sequential.CONTINUE and eight.decision == stats.BETTER


@pytest.mark.parametrize("n", [3, 8, 12])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_the_vectorised_sign_flips_are_scipys(n, alternative):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 1.0, (5, n))
    expected = [stats.permutation_p(row, np.zeros(n), True, alternative=alternative)[0]
                for row in d]
    assert sequential.sign_flip_p(d, alternative) == pytest.approx(expected)


@pytest.fixture(scope="module")
def outcomes():
    return {delta: simulation.simulate(delta) for delta in (0.0, 1.0, 2.0)}


def test_no_false_better_or_worse_at_no_difference(outcomes):
    assert outcomes[0.0].studies >= 2000 and outcomes[0.0].differs_any <= 0.05


@pytest.mark.parametrize("delta", [0.0, 1.0, 2.0])
def test_the_reported_intervals_cover_the_truth_where_the_study_stops(outcomes, delta):
    assert outcomes[delta].coverage_all >= 0.95


def test_no_false_equivalence_at_the_margin(outcomes):
    assert outcomes[1.0].equivalent <= 0.05


def test_twice_the_margin_is_found_with_fewer_seeds_than_the_budget(outcomes):
    found = outcomes[2.0]
    assert found.correct_sign >= 0.9 and found.seeds < sequential.MAX_SEEDS
    assert simulation.fixed_design_differs(2.0) < found.correct_sign


def test_the_naive_rule_exceeds_five_percent():
    assert simulation.naive_differs(0.0) > 0.05


def published_simulation() -> str:
    """The published simulation report without its first line (command and commit)."""
    text = (PROJECT_ROOT / "reports" / "sequential-design" / "simulation.md").read_text()
    return text.split("\n\n", 1)[1]


def test_the_published_simulation_is_what_the_code_gives():
    assert published_simulation() == simulation.table()


def test_the_docs_quote_the_published_simulation():
    published = published_simulation()
    statistics = (PROJECT_ROOT / "docs" / "statistics.md").read_text()
    assert published.split("\n\n", 1)[1] in statistics


@pytest.mark.parametrize("family", [1, 4, 12])
def test_the_first_decisive_look_is_the_first_where_a_decision_is_possible(family):
    """Below ``first_decisive_seeds`` nothing can be decided however clear the data; at it, an
    equivalence can (differences near 0, a wide margin)."""
    n = sequential.first_decisive_seeds(family)
    alpha = (1 - stats.CONFIDENCE) / family
    rng = np.random.default_rng(0)
    for seeds, decidable in ((n - 1, False), (n, True)):
        d = rng.normal(0, 1e-4, (1, seeds))
        code, *_ = sequential.decisions(d, margin=1.0, alpha=alpha)
        assert (code[0] != 0) == decidable, (family, seeds)
