"""Facts in and a Plan out are frozen values; JSON only at the edges, in the shape stored plans already have."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsl import compile_policy
from rules.facts import Facts, FactsError
from rules.plan import Plan, PlanError, PlannedStep
from rules.planner import plan
from rules.policy import CompiledPolicy
from rules.timing import SentRecord
from rules.vocabulary import Channel, Priority, StepAction

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = [json.loads(line) for line in (ROOT / "tests" / "dsl" / "facts-sample.jsonl").read_text().splitlines()]

#: a plan as docs/architecture.md shows it and as rows in recovery_cases.plan hold it
STORED = {
    "transaction": "t-9", "policy": "standard", "version": 3, "segment": "vip", "priority": "urgent",
    "decline_reason": "insufficient_funds", "timezone": "America/New_York",
    "steps": [
        {"n": 1, "channel": "whatsapp", "fallbacks": ["email"], "template": "vip_personal", "variant": "A",
         "send_at": "2026-11-27T14:00:00Z", "deferred_by": ["quiet_hours", "holiday"], "rule": 14,
         "held_by": [{"reason": "quiet_hours", "source": "policy", "line": 9},
                     {"reason": "holiday", "source": "default"}]},
        {"n": 2, "action": "retry_payment", "channel": None, "fallbacks": [], "template": None, "variant": None,
         "send_at": "2026-11-28T01:25:00Z", "deferred_by": [], "rule": 15},
        {"n": 3, "channel": "sms", "fallbacks": [], "template": "reminder", "variant": None, "send_at": None,
         "deferred_by": [], "rule": 16, "note": "no allowed time within 14 days"},
    ],
    "offers": ["retry_later", "partial_payment"], "escalation": {"after": "P2D", "to": "account-managers"},
    "give_up_after": "P14D", "timezones": ["America/New_York", "America/Chicago"], "offer_terms": {"pay_later": "P7D"},
    "override": {"ignores": ["business_hours", "weekends"], "lines": [31]},
    "skipped_steps": [{"rule": 17, "reason": "opted_out", "channels": ["email"]}],
}


@pytest.fixture(scope="module")
def standard() -> CompiledPolicy:
    return compile_policy((ROOT / "examples" / "policies" / "standard.policy").read_text(), version=3)


def test_a_stored_plan_reads_back_typed_and_writes_the_same_json() -> None:
    stored = copy.deepcopy(STORED)
    read = Plan.from_json(stored)
    assert read.to_json() == STORED
    assert json.dumps(read.to_json()) == json.dumps(STORED)  # the same keys in the same order
    assert read.priority is Priority.URGENT and read.timezone == "America/New_York"
    first, retry, unplaced = read.steps
    assert first.channel is Channel.WHATSAPP and first.fallbacks == (Channel.EMAIL,)
    assert first.send_at == datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    assert first.held_by[0].line == 9 and first.action is StepAction.MESSAGE
    assert retry.action is StepAction.RETRY_PAYMENT and retry.channel is None
    assert unplaced.send_at is None and unplaced.note
    assert read.escalation is not None and read.escalation.delay == timedelta(days=2)
    assert read.give_up_delay == timedelta(days=14)
    assert read.override is not None and read.override.lines == (31,)


def test_a_minimal_old_row_reads_back() -> None:
    old = {"transaction": "t-1", "policy": "p", "version": 1, "segment": None, "priority": None,
           "decline_reason": "unknown", "timezone": None, "steps": [], "offers": [], "escalation": None,
           "give_up_after": None}
    read = Plan.from_json(old)
    assert read.to_json() == old
    assert read.priority is None and read.zones == () and read.give_up_delay is None and not read.holdout


@pytest.mark.parametrize("stored", [{}, {"policy": "p", "steps": [{"n": 1}]}, {"policy": "p", "priority": "soon"},
                                    {"policy": "p", "steps": [{"n": 1, "rule": 2, "channel": "fax"}]}])
def test_what_is_not_a_plan_is_refused_clearly(stored: dict[str, object]) -> None:
    with pytest.raises(PlanError, match="not a stored plan"):
        Plan.from_json(stored)


def test_the_planner_answers_with_typed_values(standard: CompiledPolicy) -> None:
    result = plan(standard, SAMPLE[0])
    assert isinstance(result, Plan) and result.priority in set(Priority)
    assert all(isinstance(s, PlannedStep) for s in result.steps)
    for step in result.steps:
        assert step.send_at is not None and step.send_at.tzinfo is not None
        assert step.channel in set(Channel) and step.action is StepAction.MESSAGE
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.segment = "other"  # type: ignore[misc]
    assert Plan.from_json(result.to_json()) == result


def test_explained_plans_round_trip(standard: CompiledPolicy) -> None:
    result = plan(standard, SAMPLE[0], explain=True)
    assert result.explain and result.timezone_source
    assert Plan.from_json(result.to_json()) == result


def test_facts_read_once_from_json_give_the_same_plan_as_facts_built_with_datetimes(standard: CompiledPolicy) -> None:
    raw = copy.deepcopy(SAMPLE[0])
    raw["history"] = {"sent": [{"channel": "sms", "at": "2026-07-03T20:00:00Z"}], "previous_cases": 1}
    facts = Facts.from_json(raw)
    assert facts.now is not None and facts.now.tzinfo is not None
    assert isinstance(facts.failed_at, datetime) and facts.failed_at.tzinfo is UTC
    assert facts.sent == (SentRecord(datetime(2026, 7, 3, 20, 0, tzinfo=UTC), "sms"),)
    assert facts.history == {"previous_cases": 1}
    built = Facts(now=facts.now, customer=dict(raw["customer"]),
                  transaction={**raw["transaction"], "failed_at": facts.failed_at},
                  history={"previous_cases": 1}, sent=facts.sent)
    assert plan(standard, built) == plan(standard, raw) == plan(standard, facts)
    assert Facts.from_json(facts.to_json()) == facts


def test_policy_conditions_on_times_read_datetimes_as_they_read_text() -> None:
    policy = compile_policy("""policy "ages"
  segment fresh when transaction.age < 1h and transaction.failed_weekday == fri
  segment stale when transaction.age >= 1h
  plan for fresh
    step after 0m via email template "a"
  end
  plan for stale
    step after 0m via sms template "b"
  end
end
""")
    raw = {"now": "2026-07-03T23:10:00Z", "customer": {"country": "US", "timezone": "America/Chicago"},
           "transaction": {"id": "t", "failed_at": "2026-07-03T23:05:00Z"}}
    assert plan(policy, raw).segment == "fresh"
    later = Facts.from_json(raw)
    later = dataclasses.replace(later, now=later.now + timedelta(hours=2))  # type: ignore[operator]
    assert plan(policy, later).segment == "stale"


def test_facts_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(FactsError, match="facts must be a JSON object"):
        Facts.from_json([1, 2])


def test_unreadable_times_count_as_missing() -> None:
    facts = Facts.from_json({"now": "yesterday", "transaction": {"failed_at": 5},
                             "history": {"sent": [{"channel": "sms", "at": "soon"}, "x"]}})
    assert facts.now is None and facts.failed_at is None and facts.sent == ()
