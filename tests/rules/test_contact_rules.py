"""One source of contact rules: the planner and the dispatcher reach the same rules, override included; legal windows
and quiet hours win over any override; every reason that held a message back names where its rule came from."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dsl import compile_policy
from rules.contact_rules import (
    SEND_NOW,
    HeldBy,
    Override,
    OverrideError,
    contact_rules_for,
    held_by,
    policy_override,
)
from rules.planner import assignment_unit, decline_facts, in_holdout
from rules.policy import CompiledPolicy
from rules.timing import ContactHistory, SentRecord, next_send_time
from tests.rules.plans import plan_json

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
LINES = STANDARD.splitlines()
NEW_YORK = ZoneInfo("America/New_York")
# Saturday 5 December 2026, 19:00 in New York: the first step (after 1h) falls at 20:00, after Saturday's business
# hours (10:00-14:00) and before the quiet hours (21:00)
SATURDAY_7PM = datetime(2026, 12, 5, 19, 0, tzinfo=NEW_YORK)


def line_of(text: str) -> int:
    return next(n for n, line in enumerate(LINES, 1) if line.strip().startswith(text))


@pytest.fixture(scope="module")
def standard() -> CompiledPolicy:
    return compile_policy(STANDARD, version=1)


def facts(policy: CompiledPolicy, amount: str, *, region: str = "NY", postal: str = "10001",
          phone: str = "+12125550100") -> dict[str, Any]:
    """A high-value failure (not a VIP) at SATURDAY_7PM, of a customer outside the policy's holdout."""
    ids = (f"c-{amount}-{region}-{n}" for n in range(100))
    customer_id = next(i for i in ids if not in_holdout(policy, assignment_unit({"customer": {"id": i}})))
    txn_id = f"sat-{customer_id}"
    return {
        "now": SATURDAY_7PM.astimezone(UTC).isoformat(),
        "customer": {"id": customer_id, "email": "ana@example.com", "phone": phone, "country": "US", "region": region,
                     "postal_code": postal, "timezone": None, "locale": "en_US", "successful_payments": 3,
                     "failed_payments": 1, "lifetime_value": "300.00", "tags": [], "opted_out": []},
        "transaction": {"id": txn_id, "gateway": "nmi", "amount": amount, "currency": "USD", "decline_code": "202",
                        "product_type": "one_time", "failed_at": SATURDAY_7PM.astimezone(UTC).isoformat()},
    }


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(NEW_YORK)


def test_the_high_value_override_sends_on_saturday_evening(standard: CompiledPolicy) -> None:
    result = plan_json(standard, facts(standard, "2500.00"))
    first = result["steps"][0]
    assert result["segment"] == "high_value" and first["channel"] == "email"
    assert local(first["send_at"]) == SATURDAY_7PM + timedelta(hours=1)
    assert first["deferred_by"] == [] and "held_by" not in first
    assert result["override"] == {"ignores": ["business_hours", "weekends"], "lines": [line_of("override when")]}


def test_without_the_override_the_same_step_waits_for_business_hours_and_says_which_line(
    standard: CompiledPolicy,
) -> None:
    result = plan_json(standard, facts(standard, "900.00"))
    first = result["steps"][0]
    assert "override" not in result
    assert local(first["send_at"]) == datetime(2026, 12, 7, 9, 0, tzinfo=NEW_YORK)  # Monday
    assert first["deferred_by"] == ["business_hours"]
    assert first["held_by"] == [{"reason": "business_hours", "source": "policy", "line": line_of("business hours")}]


def test_quiet_hours_and_the_legal_window_win_over_the_override(standard: CompiledPolicy) -> None:
    # Florida: the policy's quiet hours there start at 20:00, and so does the law's window
    result = plan_json(standard, facts(standard, "2500.00", region="FL", postal="33101", phone="+13055550142"))
    first = result["steps"][0]
    assert result["override"]["ignores"] == ["business_hours", "weekends"]
    # Sunday 08:00: the night is closed, Sunday's closed business hours are lifted by the override
    assert local(first["send_at"]) == datetime(2026, 12, 6, 8, 0, tzinfo=NEW_YORK)
    assert set(first["deferred_by"]) == {"legal_window", "quiet_hours"}
    sources = {h["reason"]: h for h in first["held_by"]}
    assert sources["quiet_hours"] == {"reason": "quiet_hours", "source": "policy",
                                      "line": line_of('quiet hours in "US-FL"')}
    assert sources["legal_window"]["source"] == "law" and "Fla. Stat." in sources["legal_window"]["detail"]


def test_a_legal_window_alone_still_defers_an_override() -> None:
    policy = compile_policy("""policy "late"
  segment everyone when transaction.amount >= 0 USD
  quiet hours 23:00-06:00
  override when transaction.amount >= 1 USD: ignore business hours, weekends
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
""")
    rules = contact_rules_for(policy.timing, None, Override(frozenset({"business_hours", "weekends"}), (4,)),
                              country="US", region="NY")
    at = datetime(2026, 12, 5, 21, 30, tzinfo=NEW_YORK)  # after the law's 21:00, before the policy's 23:00
    scheduled = next_send_time(at, ("America/New_York",), "email", rules, country="US", region="NY")
    assert scheduled.send_at.astimezone(NEW_YORK) == datetime(2026, 12, 6, 8, 0, tzinfo=NEW_YORK)
    assert scheduled.reasons == ("legal_window",)


def test_planner_and_dispatcher_reach_the_same_rules(standard: CompiledPolicy) -> None:
    f = facts(standard, "2500.00")
    enriched = {**copy.deepcopy(f), "decline": decline_facts(f)}
    override = policy_override(standard, enriched, standard.decide(enriched).ignores)
    stored = Override.from_dict(override.as_dict())  # what the outbox row keeps, read back at send time
    assert stored == override
    assert contact_rules_for(standard.timing, {}, stored, country="US", region="NY") == contact_rules_for(
        standard.timing, {}, override, country="US", region="NY")
    assert contact_rules_for(standard.timing, {}, stored, country="US", region="NY") != contact_rules_for(
        standard.timing, {}, Override(), country="US", region="NY")


def test_send_now_lifts_business_hours_and_cadence_but_never_quiet_hours(standard: CompiledPolicy) -> None:
    rules = contact_rules_for(standard.timing, {}, Override(SEND_NOW, by="op@example.com"), country="US", region="NY")
    evening = SATURDAY_7PM + timedelta(hours=1)
    busy = ContactHistory(sent=(SentRecord(evening - timedelta(hours=2), "sms"),))  # the policy allows 1 a day
    now = next_send_time(evening, ("America/New_York",), "email", rules, country="US", region="NY", history=busy)
    assert now.send_at == evening.astimezone(UTC) and now.reasons == ()
    night = next_send_time(evening + timedelta(hours=2), ("America/New_York",), "email", rules, country="US",
                           region="NY", history=busy)
    assert night.send_at.astimezone(NEW_YORK) == datetime(2026, 12, 6, 8, 0, tzinfo=NEW_YORK)
    assert set(night.reasons) == {"quiet_hours", "legal_window"}


@pytest.mark.parametrize("lifted", [{"quiet_hours"}, {"legal_window"}, {"business_hours", "quiet_hours"}])
def test_no_override_lifts_quiet_hours_or_the_law(lifted: set[str]) -> None:
    with pytest.raises(OverrideError, match="can never be overridden"):
        Override(frozenset(lifted))


def test_an_unknown_override_is_refused() -> None:
    with pytest.raises(OverrideError, match="unknown override"):
        Override(frozenset({"sundays"}))


def test_reasons_name_settings_defaults_and_policy_lines(standard: CompiledPolicy) -> None:
    silent = compile_policy("""policy "silent"
  segment everyone when transaction.amount >= 0 USD
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
""")
    windows = {"*": {"quiet_hours": "21:00-08:00"}, "US-FL": {"business_hours": "mon-fri 09:00-17:00"}}
    got = held_by(("business_hours", "quiet_hours", "holiday", "cadence", "blackout"), silent.timing, windows,
                  country="US", region="FL", channel="email")
    assert got == (HeldBy("business_hours", "settings", detail="US-FL"), HeldBy("quiet_hours", "settings", detail="*"),
                   HeldBy("holiday", "default"), HeldBy("cadence", "default"), HeldBy("blackout", "settings"))
    mine = held_by(("holiday", "cadence"), standard.timing, windows, country="US", region="FL", channel="sms")
    assert mine == (HeldBy("holiday", "policy", line_of("skip holidays")),
                    HeldBy("cadence", "policy", line_of("cadence")))
