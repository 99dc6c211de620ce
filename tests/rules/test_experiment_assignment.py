"""Sticky draws: the holdout, the experiment's arm and each template variant are drawn for the customer, so all of a
customer's cases fall the same way; a case in an arm is planned with the arm's policy; a stopped arm's units go to
the control; promoting an arm plans exactly as the arm did."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_policy, promote_arm
from experiments.guardrails import GuardrailMetric
from rules.plan import ExperimentAssignment, Plan
from rules.planner import assignment_unit, choose_arm, in_holdout, plan
from rules.policy import CompiledPolicy
from rules.vocabulary import GUARDRAIL_METRICS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((ROOT / "tests" / "dsl" / "facts-sample.jsonl").read_text().splitlines()[0])
TEXT = """policy "trial"
  segment repeat when customer.successful_payments >= 1
  segment other  otherwise

  cadence max 1 per day
  holdout 10%

  plan for repeat
    step after 1h via email template "payment_failed" variants A 50%, B 50%
    step after 2d via sms template "reminder_short"
  end

  plan otherwise
    step after 1d via email template "payment_failed"
  end

  experiment "whatsapp first"
    arm control 50%
    arm whatsapp_first 30%
      cadence max 2 per day
      plan for repeat
        step after 1h via whatsapp, email template "reminder_short" variants A 50%, B 50%
        give up after 14d
      end
    end
    arm quiet 20%
      skip weekends
    end
    guardrail opt_out 1%
  end
end
"""
LINES = TEXT.splitlines()


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_policy(TEXT, version=2)


def facts(customer: str | None = "c-1", transaction: str = "t-1", **customer_fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(SAMPLE)
    out["transaction"]["id"] = transaction
    if customer is None:
        del out["customer"]["id"]
    else:
        out["customer"]["id"] = customer
    out["customer"].update(customer_fields)
    return out


def customers_in(policy: CompiledPolicy, arm: str, count: int = 1) -> list[str]:
    """Customer ids outside the holdout that the experiment draws to ``arm``."""
    found = []
    for i in range(10_000):
        unit = f"customer:c-{i}"
        drawn = choose_arm(policy, unit)
        if not in_holdout(policy, unit) and drawn is not None and drawn.arm == arm:
            found.append(f"c-{i}")
            if len(found) == count:
                return found
    raise AssertionError(f"no customer in {arm}")


def line_of(start: str, nth: int = 0) -> int:
    return [k for k, line in enumerate(LINES, 1) if line.strip().startswith(start)][nth]


def test_the_unit_is_the_customer_else_the_transaction() -> None:
    assert assignment_unit(facts("c-9", "t-3")) == "customer:c-9"
    assert assignment_unit(facts(None, "t-3")) == "transaction:t-3"
    assert assignment_unit(facts("", "t-3")) == "transaction:t-3"
    assert assignment_unit({"customer": {"id": 17}, "transaction": {"id": 4}}) == "customer:17"


def test_two_cases_of_one_customer_get_the_same_holdout_arm_and_variants(policy: CompiledPolicy) -> None:
    seen = Counter()
    for i in range(300):
        first = plan(policy, facts(f"c-{i}", f"t-{i}-a"))
        second = plan(policy, facts(f"c-{i}", f"t-{i}-b"))
        assert first.transaction != second.transaction
        assert first.holdout == second.holdout and first.experiment == second.experiment
        assert first.holdout or first.experiment is not None
        assert [s.variant for s in first.steps] == [s.variant for s in second.steps]
        seen["holdout" if first.holdout else first.experiment.arm] += 1  # type: ignore[union-attr]
    assert set(seen) == {"holdout", "control", "whatsapp_first", "quiet"}


def test_without_a_customer_each_transaction_is_drawn_alone(policy: CompiledPolicy) -> None:
    assignments = [plan(policy, facts(None, f"t-{i}")).experiment for i in range(60)]
    drawn = [a for a in assignments if a is not None]
    assert all(a.unit == f"transaction:t-{i}" for i, a in enumerate(assignments) if a is not None)
    assert {a.arm for a in drawn} == {"control", "whatsapp_first", "quiet"}


def test_the_split_follows_the_weights_over_20k_customers(policy: CompiledPolicy) -> None:
    drawn = Counter(choose_arm(policy, f"customer:{i}").arm for i in range(20_000))  # type: ignore[union-attr]
    shares = {arm: count / 20_000 for arm, count in drawn.items()}
    assert shares == pytest.approx({"control": 0.5, "whatsapp_first": 0.3, "quiet": 0.2}, abs=0.015)
    held = sum(in_holdout(policy, f"customer:{i}") for i in range(20_000)) / 20_000
    assert held == pytest.approx(0.10, abs=0.01)


def test_the_arm_is_drawn_independently_of_the_holdout(policy: CompiledPolicy) -> None:
    held = [f"customer:{i}" for i in range(20_000) if in_holdout(policy, f"customer:{i}")]
    drawn = Counter(choose_arm(policy, unit).arm for unit in held)  # type: ignore[union-attr]
    assert drawn["control"] / len(held) == pytest.approx(0.5, abs=0.05)


def test_a_held_out_case_gets_no_arm_and_no_messages(policy: CompiledPolicy) -> None:
    customer = next(f"c-{i}" for i in range(1000) if in_holdout(policy, f"customer:c-{i}"))
    held = plan(policy, facts(customer))
    assert held.holdout and held.steps == () and held.experiment is None
    assert "experiment" not in held.to_json()


def test_an_arm_with_statements_plans_with_its_policy(policy: CompiledPolicy) -> None:
    [control] = customers_in(policy, "control")
    [trial] = customers_in(policy, "whatsapp_first")
    base, arm = plan(policy, facts(control)), plan(policy, facts(trial))
    assert base.experiment == ExperimentAssignment("whatsapp first", "control", f"customer:{control}",
                                                   policy.experiment.salt)  # type: ignore[union-attr]
    assert arm.experiment is not None and arm.experiment.arm == "whatsapp_first" and arm.experiment.name == \
        "whatsapp first"
    assert [(s.channel, s.rule) for s in base.steps] == [("email", line_of("step after 1h")),
                                                        ("sms", line_of("step after 2d"))]
    assert [(s.channel, s.fallbacks, s.template, s.rule) for s in arm.steps] == [
        ("whatsapp", ("email",), "reminder_short", line_of("step after 1h", 1))
    ]
    assert arm.give_up_after == "P14D" and base.give_up_after is None
    assert (arm.segment, arm.policy, arm.version) == ("repeat", "trial", 2)


def test_an_arm_s_cadence_is_the_one_that_holds(policy: CompiledPolicy) -> None:
    """Sent one message an hour before the failure: the base's cap of 1 a day defers the first step, the arm's
    cap of 2 a day does not."""
    [control] = customers_in(policy, "control")
    [trial] = customers_in(policy, "whatsapp_first")

    def first_step(customer: str) -> tuple[str, ...]:
        f = facts(customer)
        f["history"] = {"sent": [{"channel": "email", "at": "2026-07-03T22:05:00Z"}]}
        return plan(policy, f).steps[0].deferred_by

    assert "cadence" in first_step(control)
    assert "cadence" not in first_step(trial)


def test_a_stopped_arm_s_units_get_the_control(policy: CompiledPolicy) -> None:
    [trial] = customers_in(policy, "whatsapp_first")
    stopped = plan(policy, facts(trial), stopped_arms={"whatsapp_first"})
    assert stopped.experiment == ExperimentAssignment(
        "whatsapp first", "control", f"customer:{trial}", policy.experiment.salt,  # type: ignore[union-attr]
        reassigned_from="whatsapp_first",
    )
    [control] = customers_in(policy, "control")
    as_control = plan(policy, facts(control))
    assert [(s.channel, s.rule) for s in stopped.steps] == [(s.channel, s.rule) for s in as_control.steps]
    assert stopped.to_json()["experiment"]["reassigned_from"] == "whatsapp_first"
    # other arms are untouched, and the control cannot be stopped
    [quiet] = customers_in(policy, "quiet")
    assert plan(policy, facts(quiet), stopped_arms={"whatsapp_first"}).experiment.arm == "quiet"  # type: ignore[union-attr]
    unstopped = plan(policy, facts(control), stopped_arms={"control"}).experiment
    assert unstopped is not None and (unstopped.arm, unstopped.reassigned_from) == ("control", None)


def test_the_assignment_round_trips_and_old_plans_still_load(policy: CompiledPolicy) -> None:
    [trial] = customers_in(policy, "whatsapp_first")
    made = plan(policy, facts(trial), stopped_arms=["whatsapp_first"])
    stored = made.to_json()
    assert stored["experiment"] == {"experiment": "whatsapp first", "arm": "control", "unit": f"customer:{trial}",
                                    "salt": policy.experiment.salt,  # type: ignore[union-attr]
                                    "reassigned_from": "whatsapp_first"}
    assert Plan.from_json(json.loads(json.dumps(stored))) == made
    old = dict(stored)
    del old["experiment"]
    assert Plan.from_json(old).experiment is None
    unexperimented = plan(compile_policy(TEXT.split("  experiment")[0] + "end\n"), facts(trial))
    assert unexperimented.experiment is None and "experiment" not in unexperimented.to_json()


def test_the_guardrail_metrics_are_the_statistics_own() -> None:
    assert GUARDRAIL_METRICS == tuple(m.value for m in GuardrailMetric)


def test_the_variant_survives_lines_moving(policy: CompiledPolicy) -> None:
    moved = compile_policy(TEXT.replace("  cadence max 1 per day\n", "\n\n  cadence max 1 per day\n"), version=2)
    for i in range(50):
        a, b = plan(policy, facts(f"c-{i}")), plan(moved, facts(f"c-{i}"))
        assert [s.variant for s in a.steps] == [s.variant for s in b.steps]


# --- promotion: the promoted policy plans as the arm did -----------------------------------------------------------


def _without_places(value: Any) -> Any:
    """A plan's JSON without what names a line of the text (promoting moves lines) and without the assignment."""
    if isinstance(value, dict):
        return {k: _without_places(v) for k, v in value.items() if k not in ("rule", "line", "lines", "experiment")}
    if isinstance(value, list):
        return [_without_places(v) for v in value]
    return value


PROMOTED = {arm: compile_policy(promote_arm(TEXT, arm), version=2) for arm in ("control", "whatsapp_first", "quiet")}
ORIGINAL = compile_policy(TEXT, version=2)


@st.composite
def random_facts(draw: st.DrawFn) -> dict[str, Any]:
    out = facts(
        draw(st.one_of(st.none(), st.text("abc0123", min_size=1, max_size=6))),
        draw(st.text("xyz0123", min_size=1, max_size=6)),
        successful_payments=draw(st.integers(0, 3)),
        region=draw(st.sampled_from(["TX", "FL", "NY"])),
    )
    day = draw(st.integers(1, 28))
    hour = draw(st.integers(0, 23))
    out["transaction"]["failed_at"] = f"2026-07-{day:02d}T{hour:02d}:05:00Z"
    out["now"] = f"2026-07-{day:02d}T{hour:02d}:10:00Z"
    out["transaction"]["decline_code"] = draw(st.sampled_from(["202", "223", "200"]))
    if draw(st.booleans()):
        out["history"] = {"sent": [{"channel": "email", "at": f"2026-07-{day:02d}T{hour:02d}:00:00Z"}]}
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_facts())
def test_a_promoted_arm_plans_as_the_arm_did(case: dict[str, Any]) -> None:
    original = plan(ORIGINAL, case)
    arm = original.experiment.arm if original.experiment else "control"  # held out: every promotion holds it out
    promoted = plan(PROMOTED[arm], case)
    assert promoted.experiment is None
    assert _without_places(promoted.to_json()) == _without_places(original.to_json())
