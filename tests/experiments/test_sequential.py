"""Always-valid intervals: the boundary against the published formulas, and issue 18's done-when 1 in simulation (A/A
experiments looked at daily for 60 days are declared significant at most 5% of the time), with the harness shown to
catch a method that is not valid under peeking (a fixed-horizon z-test read daily)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from experiments.arms import ArmData, ExperimentError
from experiments.boundaries import (
    mixture_scale,
    one_sided_bound,
    one_sided_log_martingale,
    two_sided_bound,
    two_sided_log_martingale,
)
from experiments.corrections import holm_significant, per_comparison_alpha
from experiments.estimates import Difference, Estimate, amount_estimate, difference, rate_estimate
from experiments.power import plan_for_duration
from experiments.sequential import always_valid_interval, always_valid_lower_bound
from tests.experiments.world import Counts, Money, World, daily_counts

# --- the formulas --------------------------------------------------------------------------------------------------


def test_the_mixture_scale_and_bound_match_howard_et_al() -> None:
    # best_rho(v, alpha) = v / (2 log(1/alpha) + log(1 + 2 log(1/alpha)))
    assert mixture_scale(1000, 0.05) == pytest.approx(1000 / (2 * math.log(20) + math.log(1 + 2 * math.log(20))))
    assert mixture_scale(1000, 0.05, one_sided=True) == pytest.approx(mixture_scale(1000, 0.1))
    rho = 126.0
    expected = math.sqrt(1126 * (math.log(1 + 1000 / 126) + 2 * math.log(20)))
    assert two_sided_bound(1000, 0.05, rho) == pytest.approx(expected)
    # the bound is where the martingale reaches 1 / alpha
    assert two_sided_log_martingale(two_sided_bound(1000, 0.05, rho), 1000, rho) == pytest.approx(math.log(20))
    assert one_sided_log_martingale(one_sided_bound(1000, 0.05, rho), 1000, rho) == pytest.approx(math.log(20))
    assert one_sided_bound(1000, 0.05, rho) < two_sided_bound(1000, 0.05, rho)


def test_the_p_value_is_johari_et_al_msprt() -> None:
    """Johari et al. (2022): two arms of n normal observations with variance sigma**2, mixing N(0, tau**2) over the
    effect: Lambda = sqrt(2 s2 / (2 s2 + n t2)) exp(n**2 t2 d**2 / (4 s2 (2 s2 + n t2))). Here that is intrinsic
    time 2n and scale rho = 4 sigma**2 / tau**2."""
    sigma2, tau2, n, d = 0.21, 0.0004, 3000, 0.031
    johari = math.sqrt(2 * sigma2 / (2 * sigma2 + n * tau2)) * math.exp(
        n**2 * tau2 * d**2 / (4 * sigma2 * (2 * sigma2 + n * tau2)))
    s = d * n / math.sqrt(sigma2)  # the standardised sum: d / (sigma / n)
    assert math.exp(two_sided_log_martingale(s, 2 * n, 4 * sigma2 / tau2)) == pytest.approx(johari)


def test_interval_and_p_value_agree() -> None:
    control, variant = ArmData("control", 2000, 600), ArmData("B", 2000, 670)
    diff = difference(rate_estimate(control), rate_estimate(variant))
    interval = always_valid_interval(diff, planned_units=5000)
    assert interval.effect == pytest.approx(0.035)
    assert interval.lower < interval.effect < interval.upper
    assert interval.upper - interval.effect == pytest.approx(interval.effect - interval.lower)
    # a fixed-horizon 95% interval is narrower: 1.96 standard errors against about 3
    assert (interval.upper - interval.effect) / math.sqrt(diff.variance) > 2.8
    for alpha in (0.2, 0.05, 0.01):
        at = always_valid_interval(diff, 5000, alpha)
        assert at.significant == (at.p_value <= alpha)
    # exactly at the edge: the effect that puts the lower bound on 0 has p = alpha
    half = interval.upper - interval.effect
    edge = Difference(0.3, 0.3 + half, diff.variance, diff.units)
    assert always_valid_interval(edge, 5000).p_value == pytest.approx(0.05)


def test_degenerate_differences() -> None:
    empty = difference(rate_estimate(ArmData("control", 0)), rate_estimate(ArmData("B", 1)))
    interval = always_valid_interval(empty, 100)
    assert (interval.lower, interval.upper, interval.p_value, interval.significant) == (-math.inf, math.inf, 1.0, False)
    same = difference(rate_estimate(ArmData("control", 50, 0)), rate_estimate(ArmData("B", 50, 0)))
    assert not always_valid_interval(same, 100).significant
    assert always_valid_lower_bound(empty, 100) == -math.inf
    with pytest.raises(ExperimentError, match="planned sample size must be positive"):
        always_valid_interval(same, 0)
    with pytest.raises(ExperimentError, match="alpha must be between 0 and 1"):
        always_valid_interval(same, 100, alpha=1.5)


def test_holm_and_bonferroni() -> None:
    assert per_comparison_alpha(0.05, 3) == pytest.approx(0.05 / 3)
    # Holm: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.04 <= 0.05/1: all three; Bonferroni would take only the first
    assert holm_significant([0.01, 0.04, 0.02], 0.05) == (True, True, True)
    assert holm_significant([0.01, 0.04, 0.03], 0.05) == (True, False, False)
    assert holm_significant([], 0.05) == ()
    rng = np.random.default_rng(5)
    for _ in range(20):  # against statsmodels' implementation (each call of which runs a full gc)
        p_values = list(rng.uniform(0, 0.1, rng.integers(1, 6)))
        assert holm_significant(p_values, 0.05) == tuple(multipletests(p_values, alpha=0.05, method="holm")[0])
    with pytest.raises(ExperimentError):
        per_comparison_alpha(0.05, 0)


# --- done-when 1: A/A, 500 experiments, 60 daily looks ------------------------------------------------------------

RUNS, DAYS, DAILY, RATE = 500, 60, 150, 0.30
#: what the power calculator plans for 60 days at this volume: the mixture is tuned to it
PLANNED = plan_for_duration(DAILY, DAYS, RATE, {"control": 1, "B": 1}, "control").units


@pytest.fixture(scope="module")
def aa() -> Counts:
    return daily_counts(World({"control": RATE, "B": RATE}, daily_units=DAILY, days=DAYS), RUNS, seed=11,
                        money=Money())


def declared(counts: Counts, estimate: Callable[[ArmData], Estimate]) -> float:
    """The share of runs declared significant at some daily look (the look it happens at ends the run)."""
    hits = 0
    for run in range(counts.units.shape[0]):
        for day in range(counts.units.shape[1]):
            control, variant = counts.arms_at(run, day)
            if always_valid_interval(difference(estimate(control), estimate(variant)), PLANNED).significant:
                hits += 1
                break
    return hits / counts.units.shape[0]


def test_a_a_recovery_rate_is_declared_significant_at_most_5_percent(aa: Counts) -> None:
    share = declared(aa, rate_estimate)
    assert share <= 0.05, share


def test_a_a_amount_per_case_is_declared_significant_at_most_5_percent(aa: Counts) -> None:
    share = declared(aa, amount_estimate)
    assert share <= 0.05, share


def test_the_harness_catches_a_fixed_horizon_test_read_daily(aa: Counts) -> None:
    """The same A/A runs through a z-test at 1.96: read once at day 60 it is wrong about 5% of the time, as it
    should be; read daily and stopped at the first significant look, far more often."""
    n = aa.units.astype(float)
    p = aa.conversions / np.maximum(n, 1)
    variance = (p * (1 - p) / np.maximum(n, 1)).sum(axis=2)
    z = np.abs(p[..., 1] - p[..., 0]) / np.sqrt(np.where(variance > 0, variance, np.inf))
    once = np.mean(z[:, -1] > 1.96)
    daily = np.mean((z > 1.96).any(axis=1))
    assert 0.02 <= once <= 0.08, once
    assert daily > 0.15, daily


def test_several_variants_keep_the_family_wise_rate() -> None:
    """A/A/A/A: three variants equal to control, read daily for 60 days; a false "significant" for any of them
    (Holm on the always-valid p-values) in at most 5% of runs. Without the correction, more."""
    arms = {"control": RATE, "B": RATE, "C": RATE, "D": RATE}
    counts = daily_counts(World(arms, daily_units=DAILY * 2, days=DAYS), runs=300, seed=12)
    planned = PLANNED  # each pair of arms: half of the cases, as planned for two arms at this volume
    corrected = uncorrected = 0
    for run in range(300):
        hit_corrected = hit_uncorrected = False
        for day in range(DAYS):
            control, *variants = counts.arms_at(run, day)
            diffs = [difference(rate_estimate(control), rate_estimate(v)) for v in variants]
            p_values = [always_valid_interval(d, planned).p_value for d in diffs]
            hit_corrected = hit_corrected or any(holm_significant(p_values, 0.05))
            hit_uncorrected = hit_uncorrected or min(p_values) <= 0.05
            if hit_corrected and hit_uncorrected:
                break
        corrected += hit_corrected
        uncorrected += hit_uncorrected
    assert corrected / 300 <= 0.05, corrected / 300
    assert uncorrected > corrected
