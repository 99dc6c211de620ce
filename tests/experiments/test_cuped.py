"""CUPED: theta is the pooled regression slope, the adjusted difference stays unbiased, and its variance falls when
the pre-period predicts the amount (and its reported variance is the one seen across runs)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.arms import ArmData
from experiments.cuped import cuped_amount_estimates, cuped_theta
from experiments.estimates import amount_estimate, difference
from tests.experiments.world import Money, cases

RATES = {"control": 0.30, "B": 0.33}
SPLIT = {"control": 1, "B": 1}


def test_theta_is_the_pooled_slope() -> None:
    y = np.array([0, 100, 0, 250, 400, 0, 80])
    x = np.array([10, 300, 50, 500, 900, 20, 200])
    arms = [ArmData("control", 4, 2, int(y[:4].sum()), int((y[:4] ** 2).sum()), int(x[:4].sum()),
                    int((x[:4] ** 2).sum()), int((x[:4] * y[:4]).sum())),
            ArmData("B", 3, 2, int(y[4:].sum()), int((y[4:] ** 2).sum()), int(x[4:].sum()),
                    int((x[4:] ** 2).sum()), int((x[4:] * y[4:]).sum()))]
    assert cuped_theta(arms) == pytest.approx(np.cov(y, x)[0, 1] / np.var(x, ddof=1))
    assert cuped_theta([ArmData("control", 3), ArmData("B", 3)]) == 0.0  # no pre-period: nothing to adjust with


def test_cuped_is_unbiased_narrower_and_honest_about_its_variance() -> None:
    rng = np.random.default_rng(41)
    money = Money()
    truth = (RATES["B"] - RATES["control"]) * money.mean_due
    plain, adjusted, reported_plain, reported_adjusted = [], [], [], []
    for _ in range(200):
        arms = cases(RATES, SPLIT, 4000, rng, money)
        base = difference(amount_estimate(arms[0]), amount_estimate(arms[1]))
        estimates = cuped_amount_estimates(arms)
        cuped = difference(estimates["control"], estimates["B"])
        plain.append(base.effect)
        adjusted.append(cuped.effect)
        reported_plain.append(base.variance)
        reported_adjusted.append(cuped.variance)
    plain_var, adjusted_var = np.var(plain, ddof=1), np.var(adjusted, ddof=1)
    # the history predicts the amount due, not whether it is paid: r is about 0.3, so about 9% less variance
    assert adjusted_var < 0.95 * plain_var
    assert np.mean(reported_adjusted) < 0.95 * np.mean(reported_plain)
    assert np.mean(reported_adjusted) == pytest.approx(adjusted_var, rel=0.25)  # what it says is what it is
    # unbiased: what CUPED takes away has mean 0 (paired with the plain difference, run by run)
    removed = np.array(adjusted) - np.array(plain)
    assert abs(removed.mean()) < 3 * removed.std(ddof=1) / np.sqrt(len(removed))
    assert abs(np.mean(plain) - truth) < 4 * np.sqrt(plain_var / len(plain))  # and the world is what it says


def test_the_better_the_history_predicts_the_more_it_removes() -> None:
    rng = np.random.default_rng(43)
    ratios = []
    for correlation in (0.0, 0.5, 0.95):
        arms = cases(RATES, SPLIT, 20_000, rng, Money(pre_correlation=correlation))
        plain = difference(amount_estimate(arms[0]), amount_estimate(arms[1])).variance
        estimates = cuped_amount_estimates(arms)
        ratios.append(difference(estimates["control"], estimates["B"]).variance / plain)
    assert ratios[0] > ratios[1] > ratios[2]


def test_an_uncorrelated_covariate_changes_little() -> None:
    rng = np.random.default_rng(42)
    arms = cases(RATES, SPLIT, 20_000, rng, Money(pre_correlation=0.0))
    base = difference(amount_estimate(arms[0]), amount_estimate(arms[1]))
    estimates = cuped_amount_estimates(arms)
    cuped = difference(estimates["control"], estimates["B"])
    assert cuped.variance == pytest.approx(base.variance, rel=0.02)
