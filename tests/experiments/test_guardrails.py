"""Guardrails stop a test when a variant harms opt-outs, STOPs, complaints or retry fees beyond what is accepted,
with confidence that survives daily reads; a harmless variant is almost never stopped."""

from __future__ import annotations

import pytest

from experiments.arms import ArmData, ExperimentError
from experiments.guardrails import Guardrail, GuardrailMetric, check_guardrails
from tests.experiments.world import World, daily_counts

TWO = {"control": 1, "B": 1}
ALL = [Guardrail(GuardrailMetric.OPT_OUT, 0.0025), Guardrail(GuardrailMetric.STOP, 0.0025),
       Guardrail(GuardrailMetric.COMPLAINT, 0.001), Guardrail(GuardrailMetric.RETRY_FEE, 0.005)]


def arms(control_events: dict[str, int], variant_events: dict[str, int], units: int = 5000) -> list[ArmData]:
    return [ArmData("control", units, events=control_events), ArmData("B", units, events=variant_events)]


def test_a_variant_that_doubles_opt_outs_is_stopped_with_a_message() -> None:
    checks = check_guardrails(arms({"opt_out": 50}, {"opt_out": 150}), "control", ALL[:1], TWO, 10_000)
    (check,) = checks
    assert check.stop and check.harm == pytest.approx(0.02)
    assert 0.0025 < check.lower_bound < 0.02
    assert check.message.startswith("stop: variant B harms opt_out (3.00% against 1.00% for control")


def test_harm_within_what_is_accepted_does_not_stop() -> None:
    # 0.6 points more STOPs, clearly more than control, but 1 point is accepted
    checks = check_guardrails(arms({"stop": 500}, {"stop": 800}, units=50_000), "control",
                              [Guardrail("stop", 0.01)], TWO, 100_000)
    assert not checks[0].stop and checks[0].lower_bound > 0
    assert checks[0].message.startswith("ok: variant B on stop")


def test_fewer_events_never_stop_and_absent_events_count_as_zero() -> None:
    checks = check_guardrails(arms({"complaint": 40}, {}), "control", ALL, TWO, 10_000)
    assert not any(c.stop for c in checks)
    assert {c.metric for c in checks} == {"opt_out", "stop", "complaint", "retry_fee"}


def test_guardrails_are_checked() -> None:
    with pytest.raises(ExperimentError, match="named twice"):
        check_guardrails(arms({}, {}), "control", [Guardrail("stop"), Guardrail("stop")], TWO, 100)
    with pytest.raises(ExperimentError, match="max_harm"):
        Guardrail("stop", -0.1)
    with pytest.raises(ExperimentError, match="needs a metric"):
        Guardrail("")
    with pytest.raises(ExperimentError, match="planned sample size"):
        check_guardrails(arms({}, {}), "control", ALL, TWO, 0)


RUNS, DAYS, DAILY = 300, 60, 150
RATES = {"opt_out": 0.01, "stop": 0.005, "complaint": 0.001, "retry_fee": 0.02}


def stopped(variant_rates: dict[str, float], seed: int) -> tuple[float, list[int]]:
    """The share of runs stopped by some guardrail at some daily look, and the days they stopped on."""
    world = World({"control": 0.3, "B": 0.3}, daily_units=DAILY, days=DAYS,
                  events={m: {"control": r, "B": variant_rates.get(m, r)} for m, r in RATES.items()})
    counts = daily_counts(world, RUNS, seed)
    days = []
    for run in range(RUNS):
        for day in range(DAYS):
            if any(c.stop for c in check_guardrails(counts.arms_at(run, day), "control", ALL, TWO, DAILY * DAYS)):
                days.append(day + 1)
                break
    return len(days) / RUNS, days


def test_a_harmless_variant_is_stopped_in_at_most_5_percent_of_runs_read_daily() -> None:
    share, _ = stopped({}, seed=51)
    assert share <= 0.05, share


def test_a_variant_that_triples_opt_outs_is_stopped_within_the_test() -> None:
    share, days = stopped({"opt_out": 0.03}, seed=52)
    assert share >= 0.9, share
    assert sorted(days)[len(days) // 2] <= 40  # in the median run, within 40 days
