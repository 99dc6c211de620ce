"""Inputs are checked with clear errors before any statistic is computed: a negative count, more recoveries than
cases, sums no set of cases could have, a split that does not name the arms."""

from __future__ import annotations

import math

import pytest

from experiments.arms import ArmData, ExperimentError, Moments, arms_by_name, pool_arms
from experiments.split import planned_shares


def test_an_arm_reads_its_rate_and_means() -> None:
    arm = ArmData("B", units=4, conversions=2, sum_amount=300, sum_amount_sq=100 * 100 + 200 * 200,
                  sum_seconds_to_recover=7200, sum_seconds_to_recover_sq=3600**2 * 2 + 0)
    assert arm.rate == 0.5
    assert arm.amount.mean == 75.0
    assert arm.amount.variance == pytest.approx(((0 - 75) ** 2 * 2 + (100 - 75) ** 2 + (200 - 75) ** 2) / 3)
    assert arm.time_to_recover.n == 2 and arm.time_to_recover.mean == 3600
    assert arm.event_count("opt_out") == 0


def test_moments_are_exact_from_integers() -> None:
    values = [10**9 + 1, 10**9 + 3, 10**9 + 5]  # a float sum of squares would lose the variance entirely
    moments = Moments(3, sum(values), sum(v * v for v in values))
    assert moments.variance == 4.0
    assert Moments(1, 5, 25).variance == 0.0 and Moments(0, 0, 0).mean == 0.0


@pytest.mark.parametrize(("fields", "message"), [
    ({"units": -1}, "units must not be negative"),
    ({"units": 10, "conversions": 11}, "11 conversions out of 10 units"),
    ({"units": 10, "conversions": -2}, "conversions must not be negative"),
    ({"units": 10.0}, "units must be an integer"),
    ({"units": True}, "units must be an integer"),
    ({"units": 10, "conversions": 1, "sum_amount": 500, "sum_amount_sq": 10}, "sum of squares of at least"),
    ({"units": 10, "sum_amount": 500, "sum_amount_sq": 250_000}, "without a recovered case"),
    ({"units": 10, "conversions": 1, "sum_amount": 5, "sum_amount_sq": 25, "pre_sum": 1, "pre_sum_sq": 1,
      "cross_sum": 50}, "cross_sum 50 exceeds"),
    ({"units": 10, "events": {"opt_out": 11}}, "11 opt_out events out of 10 units"),
    ({"units": 10, "events": {"opt_out": -1}}, "must not be negative"),
])
def test_impossible_arms_are_refused_with_the_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        ArmData("B", **fields)  # type: ignore[arg-type]


def test_an_arm_needs_a_name_and_its_events_cannot_change() -> None:
    with pytest.raises(ExperimentError, match="needs a name"):
        ArmData("", units=1)
    arm = ArmData("B", units=5, events={"stop": 1})
    with pytest.raises(TypeError):
        arm.events["stop"] = 4  # type: ignore[index]


def test_the_arms_of_an_experiment_name_control_once() -> None:
    control, b = ArmData("control", 10), ArmData("B", 10)
    assert set(arms_by_name([control, b], "control")) == {"control", "B"}
    with pytest.raises(ExperimentError, match="control arm 'A' is not among"):
        arms_by_name([control, b], "A")
    with pytest.raises(ExperimentError, match="two arms are named 'B'"):
        arms_by_name([control, b, ArmData("B", 3)], "control")
    with pytest.raises(ExperimentError, match="at least one variant"):
        arms_by_name([control], "control")


def test_the_split_must_name_exactly_the_arms() -> None:
    assert planned_shares({"control": 45, "B": 45, "holdout": 10}) == pytest.approx(
        {"control": 0.45, "B": 0.45, "holdout": 0.1})
    with pytest.raises(ExperimentError, match=r"unknown arms \['C'\]"):
        planned_shares({"control": 1, "B": 1, "C": 1}, ["control", "B"])
    with pytest.raises(ExperimentError, match=r"no weight to arms \['B'\]"):
        planned_shares({"control": 1}, ["control", "B"])
    for bad in (0, -1, math.nan, math.inf, "1"):
        with pytest.raises(ExperimentError, match="positive number"):
            planned_shares({"control": 1, "B": bad})  # type: ignore[dict-item]


def test_pooled_arms_add_their_sums() -> None:
    a = ArmData("A", 10, 2, 300, 50_000, events={"stop": 1})
    b = ArmData("B", 5, 1, 100, 10_000, events={"stop": 2, "complaint": 1})
    pooled = pool_arms("recoup", [a, b])
    assert (pooled.units, pooled.conversions, pooled.sum_amount, pooled.sum_amount_sq) == (15, 3, 400, 60_000)
    assert dict(pooled.events) == {"stop": 3, "complaint": 1}
