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


def one_look(n, design=sequential.GROUP_SEQUENTIAL):
    """A plan of a single look at ``n`` seeds: the fixed design (group-sequential) or the
    confidence sequence at n (anytime)."""
    return sequential.Schedule(n, max_seeds=n, design=design)


def decide_at(metric, arm, reference, higher, margin, family=4, identical=False,
              design=sequential.GROUP_SEQUENTIAL):
    schedule = one_look(len(arm), design)
    return sequential.decide(metric, by_seed(arm), by_seed(reference), higher, margin, family,
                             schedule, len(arm), identical)


def test_too_few_seeds_decide_nothing_in_the_anytime_design():
    assert sequential.critical_t(5, 0.05 / 4) == np.inf  # (1 + 5)^2 = 36 < 80
    look = decide_at("m", [5.0, 5.1, 4.9, 5.2, 5.0], [0.0] * 5, True, 1.0,
                     design=sequential.ANYTIME)
    assert look.decision == sequential.CONTINUE and look.low == -np.inf


def test_schedule_looks_and_refusals():
    assert sequential.Schedule(5).looks() == [5, 8, 11, 14, 17, 20]
    assert sequential.Schedule(5, 4, 15).looks() == [5, 9, 13, 15]
    assert sequential.schedule_for(4).looks() == [7, 10, 13, 16, 19, 20]
    assert sequential.schedule_for(12).first == 8
    with pytest.raises(ValueError, match="schedule"):
        sequential.Schedule(first=1)
    with pytest.raises(ValueError, match="design 'bayes' is not one of"):
        sequential.Schedule(5, design="bayes")
    with pytest.raises(ValueError, match="not one of its looks"):
        sequential.Schedule(5).critical(6, 6, 0.05, 2)


def test_the_group_sequential_boundary_is_the_spending_boundary_at_the_look():
    """At the plan's second look the interval is mean -/+ c_2 sd / sqrt(n), c_2 the
    O'Brien-Fleming-type t boundary over the looks 7 and 10 of 20; with a seed missing, that
    boundary's tail carried to 8 df."""
    from scipy import stats as scipy_stats

    from regbench.design import spending

    schedule = sequential.schedule_for(4)
    c = spending.t_boundaries((7, 10), 20, 0.05 / 4, sides=2)[-1]
    assert schedule.critical(10, 10, 0.05 / 4, 2) == c
    assert schedule.critical(10, 9, 0.05 / 4, 2) == pytest.approx(
        scipy_stats.t.isf(scipy_stats.t.sf(c, 9), 8))
    assert schedule.critical(10, 10, 0.05 / 4, 1) < c


def test_decisions_on_hand_made_studies():
    rng = np.random.default_rng(0)
    reference = rng.normal(0.97, 0.004, 14)
    better = decide_at("test_accuracy", reference + 0.003 + rng.normal(0, 0.0003, 14),
                       reference, True, 0.001)
    assert better.decision == stats.BETTER and better.low > 0
    worse_loss = decide_at("test_data_loss", reference + 0.003,
                           reference + rng.normal(0, 0.0003, 14), False, 0.001)
    assert worse_loss.decision == stats.WORSE
    close = reference + rng.normal(0, 0.00005, 14)
    equivalent = decide_at("test_accuracy", close, reference, True, 0.001)
    assert equivalent.decision == stats.EQUIVALENT and -0.001 < equivalent.low
    same = decide_at("test_accuracy", reference, reference, True, 0.001, identical=True)
    assert same.decision == sequential.IDENTICAL
    counts = reference[:5]  # equal on this metric only: tested, and 5 seeds cannot decide
    alone = decide_at("test_accuracy", counts, counts, True, 0.001)
    assert alone.decision == sequential.CONTINUE


def test_a_difference_inside_the_margin_is_said_both_ways():
    """The interval excludes 0 and lies inside the margin: better, by less than the margin
    (not a bare "equivalent", which would hide the sign)."""
    rng = np.random.default_rng(1)
    reference = rng.normal(0.97, 0.004, 14)
    look = decide_at("test_accuracy", reference + 0.0004 + rng.normal(0, 0.00005, 14),
                     reference, True, 0.001)
    assert look.decision == f"{stats.BETTER}, {sequential.BY_LESS}"
    assert 0 < look.low and look.high < 0.001 and look.decided


def test_equivalence_reads_its_own_interval_and_the_report_says_which():
    """TOST at error alpha per side is the interval with each side at alpha: narrower than the
    two-sided one. Where only the narrower lies inside the margin, the verdict is equivalent,
    and what quotes it shows the interval equivalence read (the two-sided alone would seem to
    contradict it)."""
    from regbench.design import study

    rng = np.random.default_rng(3)
    reference = rng.normal(0.5, 0.03, 12)
    d = rng.normal(0.0, 1.0, 12)
    d = (d - d.mean()) / d.std(ddof=1) * 0.03  # mean 0, sd 0.03
    schedule = one_look(12)
    two_low, two_high = sequential.interval(d[None, :], 0.05 / 4, schedule, 12, 2)
    tost_low, tost_high = sequential.interval(d[None, :], 0.05 / 4, schedule, 12, 1)
    margin = (float(two_high[0]) + float(tost_high[0])) / 2  # between the two half-widths
    look = decide_at("test_data_loss", reference + d, reference, False, margin)
    assert look.decision == stats.EQUIVALENT and look.says_equivalent
    assert look.low < -margin and margin < look.high  # the two-sided interval passes it
    assert (look.equivalence_low, look.equivalence_high) == pytest.approx(
        (tost_low[0], tost_high[0]))
    assert -margin < look.equivalence_low and look.equivalence_high < margin
    assert study.intervals(look) == (
        f"[{look.low:+.4f}, {look.high:+.4f}], equivalence interval "
        f"[{look.equivalence_low:+.4f}, {look.equivalence_high:+.4f}]")
    better = decide_at("m", [1.0] * 8, [0.0] * 8, True, 0.1)
    assert not better.says_equivalent and study.intervals(better) == (
        f"[{better.low:+.4f}, {better.high:+.4f}]")


def test_ties_on_every_seed_are_not_a_point_interval():
    """Accuracies (multiples of 1/10,000) tied on every seed of arms that differ elsewhere:
    the spread is floored at the grid's rounding error, so the interval has a width."""
    reference = np.round(np.random.default_rng(2).normal(0.97, 0.004, 10), 4)
    look = decide_at("test_accuracy", reference, reference, True, 0.001)
    step = np.diff(np.unique(reference)).min()
    assert look.low < 0 < look.high and look.high - look.low > step / 10
    assert sequential.spread_floor(reference) == pytest.approx(step / np.sqrt(6))


def test_zero_spread_is_held_back_by_the_sign_flips():
    """Every difference the same: 8 seeds' two-sided sign-flip floor, 2/256, is below 0.05/4,
    7 seeds' is not: at 8 it decides, at 7 it cannot."""
    seven = decide_at("m", [1.0] * 7, [0.0] * 7, True, 0.1)
    eight = decide_at("m", [1.0] * 8, [0.0] * 8, True, 0.1)
    assert seven.decision == sequential.CONTINUE and eight.decision == stats.BETTER


@pytest.mark.parametrize("n", [3, 8, 12])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_the_vectorised_sign_flips_are_scipys(n, alternative):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 1.0, (5, n))
    expected = [stats.permutation_p(row, np.zeros(n), True, alternative=alternative)[0]
                for row in d]
    assert sequential.sign_flip_p(d, alternative) == pytest.approx(expected)


FAST = 2000  # studies per simulation in the tests: seeded, seconds


@pytest.fixture(scope="module")
def outcomes():
    return {delta: simulation.simulate(delta, studies=FAST) for delta in (0.0, 1.0, 2.0)}


def test_no_false_better_or_worse_at_no_difference(outcomes):
    assert outcomes[0.0].false_differs <= 0.05


@pytest.mark.parametrize("delta", [0.0, 1.0, 2.0])
def test_the_reported_intervals_cover_the_truth_where_the_study_stops(outcomes, delta):
    assert outcomes[delta].coverage_all >= 0.95


def test_no_false_equivalence_at_the_margin(outcomes):
    assert outcomes[1.0].false_equivalent <= 0.05


def test_the_design_decides_where_the_anytime_sequence_did_not(outcomes):
    """At no difference, spread = margin: most comparisons are decided equivalent, far more
    than by the confidence sequence over the same budget; twice the margin is found before
    the budget."""
    before = simulation.simulate(0.0, plan=simulation.PLANS[2], studies=FAST)
    assert outcomes[0.0].correct >= 0.85 and outcomes[0.0].correct > 2 * before.correct
    assert outcomes[2.0].correct >= 0.99 and outcomes[2.0].seeds < sequential.MAX_SEEDS


def test_heavy_tails_and_discrete_steps_keep_the_error_rates():
    """(Strong skew does not: reports/sequential-design/simulation.md says where.)"""
    for distribution in ("t3", "discrete"):
        null = simulation.simulate(0.0, distribution=distribution, studies=FAST)
        at_margin = simulation.simulate(1.0, distribution=distribution, studies=FAST)
        assert null.false_differs <= 0.05 and at_margin.false_equivalent <= 0.05, distribution


def test_a_published_row_is_what_the_code_gives():
    """The cheapest rows of reports/sequential-design/simulation.md, recomputed."""
    published = (PROJECT_ROOT / "reports" / "sequential-design" / "simulation.md").read_text()
    for plan in simulation.PLANS:
        assert simulation.row(2.0, 1.0, 4, "normal", plan) in published, plan.name


def test_the_docs_quote_the_published_simulation():
    published = (PROJECT_ROOT / "reports" / "sequential-design" / "simulation.md").read_text()
    statistics = (PROJECT_ROOT / "docs" / "statistics.md").read_text()
    regbench_rows = [line for line in published.splitlines()
                     if simulation.PLANS[0].name in line and "| 4 | normal |" in line]
    assert regbench_rows and all(line in statistics for line in regbench_rows)


@pytest.mark.parametrize("family", [1, 4, 12])
def test_the_first_decisive_look_is_the_first_where_a_decision_is_possible(family):
    """Below ``first_decisive_seeds`` nothing can be decided however clear the data; at it, an
    equivalence can (differences near 0, a wide margin)."""
    alpha = (1 - stats.CONFIDENCE) / family
    rng = np.random.default_rng(0)
    for design in sequential.DESIGNS:
        n = sequential.first_decisive_seeds(family, design)
        for seeds, decidable in ((n - 1, False), (n, True)):
            d = rng.normal(0, 1e-4, (1, seeds))
            code, *_ = sequential.decisions(d, 1.0, alpha, one_look(seeds, design), seeds)
            assert (code[0] != 0) == decidable, (family, design, seeds)
