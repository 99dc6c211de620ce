"""The planner against the facts sample and the standard policy: DESIGN.md's Plan JSON, deterministically."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dsl import compile_policy
from rules.planner import FactsError, assignment_unit, decline_facts, in_holdout, plan
from rules.policy import CompiledPolicy
from tests.rules.plans import plan_json

ROOT = Path(__file__).resolve().parents[2]
STANDARD = ROOT / "examples" / "policies" / "standard.policy"
SAMPLE = [
    json.loads(line) for line in (ROOT / "tests" / "dsl" / "facts-sample.jsonl").read_text().splitlines()
]
PLAN_KEYS = {
    "transaction",
    "policy",
    "version",
    "segment",
    "priority",
    "decline_reason",
    "timezone",
    "steps",
    "offers",
    "escalation",
    "give_up_after",
}
STEP_KEYS = {"n", "channel", "fallbacks", "template", "variant", "send_at", "deferred_by", "rule"}


@pytest.fixture(scope="module")
def standard() -> CompiledPolicy:
    return compile_policy(STANDARD.read_text(), version=3)


def facts_with(base: dict[str, Any], **groups: dict[str, Any]) -> dict[str, Any]:
    facts = copy.deepcopy(base)
    for group, values in groups.items():
        facts.setdefault(group, {}).update(values)
    return facts


def test_the_sample_gives_design_md_plans(standard: CompiledPolicy) -> None:
    texas, munich = (plan_json(standard, facts) for facts in SAMPLE)
    for result in (texas, munich):
        assert PLAN_KEYS <= set(result)
        for step in result["steps"]:
            assert STEP_KEYS <= set(step)
        json.dumps(result)  # plain JSON
    assert texas["transaction"] == "s-t1" and texas["policy"] == "standard" and texas["version"] == 3
    assert texas["segment"] == "repeat" and texas["decline_reason"] == "insufficient_funds"
    assert texas["timezone"] == "America/Chicago"
    assert texas["offers"] == ["partial_payment", "pay_later"] and texas["offer_terms"] == {
        "pay_later": "P7D"
    }
    assert [s["rule"] for s in texas["steps"]] == [43, 44, 45]
    assert texas["give_up_after"] == "P14D" and texas["escalation"] is None
    assert munich["segment"] == "first_time" and munich["decline_reason"] == "expired_card"
    assert munich["offers"] == ["update_card"]
    assert munich["timezone"] == "Europe/Berlin"


def test_send_times_respect_business_hours_and_holidays(standard: CompiledPolicy) -> None:
    texas = plan_json(standard, SAMPLE[0])
    first = texas["steps"][0]
    # failed Friday 3 July 2026 18:05 in Houston (Independence Day observed); +2h is Friday night, Saturday is
    # the 4th of July and Sunday has no business hours: Monday 09:00 CDT.
    assert first["send_at"] == "2026-07-06T14:00:00Z"
    assert "business_hours" in first["deferred_by"]
    sends = [s["send_at"] for s in texas["steps"]]
    assert sends == sorted(sends) and len(set(s[:10] for s in sends)) == 3  # max 1 per day


def test_the_same_facts_always_give_the_same_plan(standard: CompiledPolicy) -> None:
    assert plan(standard, SAMPLE[0]) == plan(standard, copy.deepcopy(SAMPLE[0]))


def test_holdout_and_variants_are_drawn_from_the_customer(standard: CompiledPolicy) -> None:
    held, variants = [], set()
    for i in range(400):
        facts = facts_with(
            SAMPLE[0],
            transaction={"id": f"t-{i}", "amount": "900.00"},
            customer={"id": f"c-{i}", "tags": [], "lifetime_value": "0"},
        )
        result = plan_json(standard, facts)
        another_case = plan_json(standard, facts_with(facts, transaction={"id": f"t-{i}-again"}))
        assert (result.get("holdout"), [s["variant"] for s in result["steps"]]) == (
            another_case.get("holdout"),
            [s["variant"] for s in another_case["steps"]],
        )
        if result.get("holdout"):
            held.append(i)
            assert result["steps"] == []
        else:
            assert result["segment"] == "high_value"
            variants.add(result["steps"][0]["variant"])
            assert result == plan_json(standard, facts)
    assert 5 <= len(held) <= 40  # 5% of 400, loosely
    assert variants == {"A", "B"}


def test_without_a_customer_id_the_draws_are_by_transaction(standard: CompiledPolicy) -> None:
    facts = facts_with(SAMPLE[0], transaction={"id": "t-7"})
    del facts["customer"]["id"]
    assert assignment_unit(facts) == "transaction:t-7"
    assert assignment_unit(facts_with(facts, customer={"id": 42})) == "customer:42"
    held = [i for i in range(400) if in_holdout(standard, f"transaction:t-{i}")]
    assert 5 <= len(held) <= 40
    i = held[0]
    assert plan_json(standard, facts_with(facts, transaction={"id": f"t-{i}"}))["holdout"] is True


def test_retry_payment_steps_have_no_channel(standard: CompiledPolicy) -> None:
    facts = facts_with(
        SAMPLE[0],
        transaction={"id": "t-retry-2", "amount": "900.00"},
        customer={"tags": [], "lifetime_value": "0"},
    )
    result = plan_json(standard, facts)
    assert not result.get("holdout")
    retry = [s for s in result["steps"] if s.get("action") == "retry_payment"]
    assert len(retry) == 1 and retry[0]["channel"] is None and retry[0]["rule"] == 36
    assert [s["n"] for s in result["steps"]] == [1, 2, 3, 4]


def test_hard_declines_skip_the_soft_only_retry(standard: CompiledPolicy) -> None:
    facts = facts_with(
        SAMPLE[0],
        transaction={"id": "t-retry-2", "amount": "900.00", "decline_code": "223"},
        customer={"tags": [], "lifetime_value": "0"},
    )
    result = plan_json(standard, facts)
    assert result["decline_reason"] == "expired_card"
    assert all(s.get("action") != "retry_payment" for s in result["steps"])


def test_opted_out_channels_become_fallbacks_or_skip_the_step(standard: CompiledPolicy) -> None:
    vip = facts_with(
        SAMPLE[0], transaction={"id": "t-vip-1"}, customer={"tags": ["vip"], "opted_out": ["whatsapp"]}
    )
    result = plan_json(standard, vip)
    assert result["segment"] == "vip" and result["priority"] == "urgent"
    assert (result["steps"][0]["channel"], result["steps"][0]["fallbacks"]) == ("sms", ["email"])
    assert result["escalation"] == {"after": "P2D", "to": "account-managers"}
    email_out = facts_with(vip, customer={"opted_out": ["email"]})
    skipped = plan_json(standard, email_out)
    assert [s["rule"] for s in skipped["steps"]] == [26]
    assert skipped["skipped_steps"] == [{"rule": 27, "reason": "opted_out", "channels": ["email"]}]


def test_the_urgent_override_lifts_business_hours(standard: CompiledPolicy) -> None:
    base = facts_with(SAMPLE[0], customer={"tags": [], "lifetime_value": "0"})
    normal = plan_json(standard, facts_with(base, transaction={"id": "t-o-3", "amount": "900.00"}))
    urgent = plan_json(standard, facts_with(base, transaction={"id": "t-o-3", "amount": "2500.00"}))
    assert not normal.get("holdout") and not urgent.get("holdout")
    assert urgent["steps"][0]["send_at"] < normal["steps"][0]["send_at"]


def test_explain_adds_the_conditions(standard: CompiledPolicy) -> None:
    result = plan_json(standard, SAMPLE[0], explain=True)
    assert {
        "line": 5,
        "kind": "segment",
        "condition": "customer.successful_payments == 0",
        "value": False,
    } in (result["explain"])


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        ("202", "insufficient_funds", "soft"),
        ("203", "insufficient_funds", "soft"),
        ("223", "expired_card", "hard"),
        ("200", "do_not_honor", "soft"),
    ],
)
def test_decline_reason_comes_from_nmi_codes(code: str, reason: str, kind: str) -> None:
    derived = decline_facts({"transaction": {"decline_code": code, "gateway": "nmi"}})
    assert (derived["reason"], derived["kind"]) == (reason, kind)


def test_facts_without_any_time_are_refused(standard: CompiledPolicy) -> None:
    with pytest.raises(FactsError):
        plan(standard, {"customer": {}, "transaction": {}})
    with pytest.raises(FactsError):
        plan(standard, [])  # type: ignore[arg-type]


def test_unknown_customer_location_gives_steps_without_send_times(standard: CompiledPolicy) -> None:
    facts = {
        "now": "2026-07-03T23:10:00Z",
        "customer": {"successful_payments": 3},
        "transaction": {"id": "t-x", "amount": "10.00", "currency": "USD", "decline_code": "202"},
    }
    result = plan_json(standard, facts)
    assert result["timezone"] is None and result["segment"] == "repeat"
    assert result["steps"] and all(s["send_at"] is None and s["note"] for s in result["steps"])
