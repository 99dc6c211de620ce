"""The power calculator: its arithmetic against the textbook formula, and issue 18's done-when 2 in simulation (a
planted lift of 5 points is detected with at least 80% power, by the always-valid test read daily, at the sample size
the calculator asks for), with the harness shown to catch a calculator that ignores the sequential test."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from experiments.arms import ExperimentError
from experiments.estimates import difference, rate_estimate
from experiments.power import (
    History,
    minimum_detectable_effect,
    plan_for_duration,
    plan_for_effect,
    required_units,
    sequential_critical_value,
)
from experiments.sequential import always_valid_interval
from tests.experiments.world import World, daily_counts

TWO = {"control": 1, "B": 1}


def test_the_fixed_horizon_sample_size_is_the_textbook_one() -> None:
    """n per arm = (z_(1-alpha/2) + z_power)**2 (p1 q1 + p2 q2) / d**2 (Fleiss, without continuity correction)."""
    per_arm = (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 * (0.3 * 0.7 + 0.35 * 0.65) / 0.05**2
    assert required_units(0.30, 0.05, TWO, "control", sequential=False) == math.ceil(2 * per_arm)


def test_the_sequential_plan_uses_the_always_valid_half_width() -> None:
    r = 2 * math.log(20) + math.log(1 + 2 * math.log(20))
    c = math.sqrt((1 + 1 / r) * (math.log(1 + r) + 2 * math.log(20)))
    assert sequential_critical_value(0.05) == pytest.approx(c)
    assert c == pytest.approx(3.035, abs=1e-3)
    per_arm = (c + norm.ppf(0.8)) ** 2 * (0.3 * 0.7 + 0.35 * 0.65) / 0.05**2
    plan = plan_for_effect(150, 0.30, 0.05, TWO, "control")
    assert plan.units == math.ceil(2 * per_arm)
    assert plan.days == math.ceil(plan.units / 150)
    assert 1.85 < plan.inflation < 1.95


def test_the_mde_of_a_duration_is_the_inverse_of_the_sample_size() -> None:
    plan = plan_for_duration(150, 60, 0.30, TWO, "control")
    assert plan.days == 60
    assert required_units(0.30, plan.effect, TWO, "control") == pytest.approx(150 * 60, abs=1)
    assert minimum_detectable_effect(0.30, plan.units, TWO, "control") == pytest.approx(plan.effect, abs=1e-4)
    # more cases detect smaller effects
    assert minimum_detectable_effect(0.30, 40_000, TWO, "control") < plan.effect


def test_more_variants_and_uneven_splits_need_more_cases() -> None:
    two = required_units(0.30, 0.05, TWO, "control")
    three = required_units(0.30, 0.05, {"control": 1, "B": 1, "C": 1}, "control")
    assert three > 1.5 * two  # three arms' cases, each pair at alpha / 2
    uneven = required_units(0.30, 0.05, {"control": 9, "B": 1}, "control")
    assert uneven > 2 * two
    with_holdout = plan_for_effect(150, 0.30, 0.05, {"control": 45, "B": 45, "holdout": 10}, "control",
                                   holdout="holdout")
    assert with_holdout.comparisons == 1
    assert with_holdout.units == pytest.approx(two / 0.9, abs=2)


def test_history_and_inputs() -> None:
    history = History(cases=9_000, recovered=2_700, days=60)
    assert (history.daily_units, history.baseline_rate) == (150, 0.3)
    with pytest.raises(ExperimentError, match="between 0 and 1"):
        required_units(1.2, 0.05, TWO, "control")
    with pytest.raises(ExperimentError, match="positive rise"):
        required_units(0.3, 0, TWO, "control")
    with pytest.raises(ExperimentError, match="leaves the rates between 0 and 1"):
        required_units(0.98, 0.05, TWO, "control")
    with pytest.raises(ExperimentError, match="no weight to the control arm"):
        required_units(0.3, 0.05, TWO, "A")
    with pytest.raises(ExperimentError, match="no variant"):
        required_units(0.3, 0.05, {"control": 1, "holdout": 1}, "control", holdout="holdout")
    with pytest.raises(ExperimentError, match="cannot detect even"):
        minimum_detectable_effect(0.3, 10, TWO, "control")
    with pytest.raises(ExperimentError, match="cases per day must be positive"):
        plan_for_effect(0, 0.3, 0.05, TWO, "control")
    with pytest.raises(ExperimentError):
        History(cases=10, recovered=11, days=1)


# --- done-when 2 ---------------------------------------------------------------------------------------------------

RUNS, DAILY, BASELINE, LIFT = 500, 150, 0.30, 0.05


def detected(units_cap: int, planned: int, seed: int) -> float:
    """The share of runs in which the always-valid test, read daily, declares B better by the day the cases reach
    ``units_cap`` (the last look is exactly at the cap)."""
    days = math.ceil(units_cap / DAILY) + 4  # enough days for every run to reach the cap
    world = World({"control": BASELINE, "B": BASELINE + LIFT}, daily_units=DAILY, days=days, cap=units_cap)
    counts = daily_counts(world, RUNS, seed)
    hits = 0
    for run in range(RUNS):
        for day in range(days):
            control, variant = counts.arms_at(run, day)
            if always_valid_interval(difference(rate_estimate(control), rate_estimate(variant)), planned).significant:
                hits += 1
                break
    assert (counts.units[:, -1, :].sum(axis=1) == units_cap).all()
    return hits / RUNS


def test_a_5_point_lift_is_detected_with_80_percent_power_at_the_calculators_sample_size() -> None:
    plan = plan_for_effect(DAILY, BASELINE, LIFT, TWO, "control")
    power = detected(plan.units, plan.units, seed=21)
    assert power >= 0.80, power


def test_the_harness_catches_a_calculator_that_ignores_the_sequential_test() -> None:
    """At the sample size a fixed-horizon calculator gives (about half), the always-valid test falls well short."""
    plan = plan_for_effect(DAILY, BASELINE, LIFT, TWO, "control")
    power = detected(plan.fixed_horizon_units, plan.fixed_horizon_units, seed=22)
    assert power < 0.70, power
