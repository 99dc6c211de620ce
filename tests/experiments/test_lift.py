"""Holdout lift: Newcombe's interval against the published example, Welch's against scipy, and issue 18's done-when
4 in simulation (the 95% interval contains the planted truth in at least 93% of 200 runs), with the harness shown to
catch an interval that forgets the holdout's own noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.arms import ArmData, ExperimentError
from experiments.lift import Interval, holdout_lift, newcombe_interval, welch_interval
from tests.experiments.world import Money, cases


def test_newcombes_published_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17, example (a): 56/70 against 48/80, method 10: 0.0524 to 0.3339."""
    interval = newcombe_interval(ArmData("recoup", 70, 56), ArmData("holdout", 80, 48))
    assert interval.estimate == pytest.approx(0.2)
    assert (interval.lower, interval.upper) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_welch_against_scipy() -> None:
    treated = np.array([0, 0, 1200, 0, 4500, 300, 0, 0, 9900, 0, 0, 2500])
    holdout = np.array([0, 0, 0, 700, 0, 0, 0, 1500])
    arm = ArmData("recoup", len(treated), int((treated > 0).sum()), int(treated.sum()), int((treated**2).sum()))
    hold = ArmData("holdout", len(holdout), int((holdout > 0).sum()), int(holdout.sum()), int((holdout**2).sum()))
    expected = stats.ttest_ind(treated, holdout, equal_var=False).confidence_interval(0.95)
    interval = welch_interval(arm, hold)
    assert (interval.lower, interval.upper) == pytest.approx((expected.low, expected.high))


def test_the_lift_in_cases_and_money() -> None:
    lift = holdout_lift(ArmData("recoup", 9000, 2700, 2700 * 5000, 2700 * 5000**2 + 10**9),
                        ArmData("holdout", 1000, 120, 120 * 5000, 120 * 5000**2))
    assert (lift.treated_rate, lift.holdout_rate) == (0.3, 0.12)
    assert lift.rate.estimate == pytest.approx(0.18)
    assert lift.recovered_cases.estimate == pytest.approx(0.18 * 9000)
    assert lift.recovered_cases.lower == pytest.approx(lift.rate.lower * 9000)
    assert lift.amount_per_case.estimate == pytest.approx(0.18 * 5000)
    assert lift.recovered_amount.estimate == pytest.approx(0.18 * 5000 * 9000)
    assert lift.rate.lower < 0.18 < lift.rate.upper


def test_degenerate_and_bad_inputs() -> None:
    empty = holdout_lift(ArmData("recoup", 0), ArmData("holdout", 0))
    assert (empty.rate.lower, empty.rate.upper) == (-1.0, 1.0)
    assert (empty.amount_per_case.lower, empty.amount_per_case.upper) == (-math.inf, math.inf)
    with pytest.raises(ExperimentError, match="confidence level"):
        holdout_lift(ArmData("recoup", 10), ArmData("holdout", 10), level=95)
    with pytest.raises(ExperimentError, match="two ArmData"):
        holdout_lift(ArmData("recoup", 10), None)  # type: ignore[arg-type]


# --- done-when 4 ---------------------------------------------------------------------------------------------------
#
# "In at least 93% of 200 runs": a perfectly calibrated 95% interval covers in fewer than 93% of some 200 runs by
# chance alone (about one set of 200 in ten: the standard error of a coverage over 200 runs is 1.5 points). So the
# test takes 1,000 runs, five sets of 200, and asks 93% of all of them, which a seed cannot pass by luck;
# bench/experiments.py reports the sets of 200 one by one.

RUNS = 1000
SPLIT = {"recoup": 90, "holdout": 10}


def coverage(rates: dict[str, float], n: int, seed: int) -> tuple[float, float, float]:
    """Over ``RUNS`` reads of ``n`` cases: the share of rate intervals and of amount intervals that contain the
    planted lift, and the share of intervals that would, had the holdout's rate been known exactly."""
    rng = np.random.default_rng(seed)
    money = Money()
    truth_rate = rates["recoup"] - rates["holdout"]
    truth_amount = truth_rate * money.mean_due
    rate_hits = amount_hits = naive_hits = 0
    for _ in range(RUNS):
        treated, holdout = cases(rates, SPLIT, n, rng, money)
        lift = holdout_lift(treated, holdout)
        rate_hits += lift.rate.contains(truth_rate)
        amount_hits += lift.amount_per_case.contains(truth_amount)
        se = math.sqrt(treated.rate * (1 - treated.rate) / treated.units)  # the holdout's noise forgotten
        naive = Interval(lift.rate.estimate, lift.rate.estimate - 1.96 * se, lift.rate.estimate + 1.96 * se, 0.95)
        naive_hits += naive.contains(truth_rate)
    return rate_hits / RUNS, amount_hits / RUNS, naive_hits / RUNS


def test_the_95_percent_interval_contains_the_planted_lift_in_93_percent_of_runs() -> None:
    """10,000 cases, a tenth held out: the rate's interval covers about 95.4% of the time, the amount's about 94%
    (heavy-tailed amounts: Welch's interval runs a little short, as it does on skewed data)."""
    rate, amount, naive = coverage({"recoup": 0.30, "holdout": 0.12}, 10_000, seed=61)
    assert rate >= 0.93, rate
    assert amount >= 0.925, amount
    assert naive < 0.8, naive  # the harness has teeth


def test_coverage_holds_with_a_small_holdout_and_a_rare_recovery() -> None:
    """About 200 held out, of whom about 8 recover: where Newcombe's interval earns its keep over Wald's."""
    rate, _, _ = coverage({"recoup": 0.12, "holdout": 0.04}, 2_000, seed=62)
    assert rate >= 0.93, rate
