"""Issue 13, point 3: a policy's urgent override, decided at planning, holds at send time too, and every deferral
names its reasons and the policy line behind them. Legal windows and quiet hours still win over any override.

The standard policy's own high-value override (``override when transaction.amount >= 2000 USD: ignore business
hours, weekends``) is the case: a Saturday evening, after Saturday's business hours (10:00-14:00) and before the
quiet hours (21:00).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.models import Customer, MessageEvent, OutboxMessage, RecoveryCase
from app.outbox.run import dispatch_due
from app.recovery.case_timeline import case_timeline
from app.recovery.planning import plan_cases
from app.recovery.policies import activate_text, compiled
from rules.planner import assignment_unit, in_holdout
from rules.policy import CompiledPolicy
from tests.builders import make_case, make_customer, make_transaction

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
LINES = STANDARD.splitlines()
NEW_YORK = ZoneInfo("America/New_York")
SATURDAY = datetime(2026, 12, 5, tzinfo=NEW_YORK)
BUSINESS_HOURS_LINE = next(n for n, line in enumerate(LINES, 1) if line.strip().startswith("business hours"))
OVERRIDE_LINE = next(n for n, line in enumerate(LINES, 1) if line.strip().startswith("override when"))
FLORIDA_QUIET_LINE = next(n for n, line in enumerate(LINES, 1) if line.strip().startswith('quiet hours in "US-FL"'))


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute).astimezone(UTC)


def customer_outside_holdout(policy: CompiledPolicy, **fields) -> Customer:  # type: ignore[no-untyped-def]
    """A new customer the policy's holdout leaves out (drawn by customer, whose id the database gives)."""
    for _ in range(100):
        customer = make_customer(**fields)
        if not in_holdout(policy, assignment_unit({"customer": {"id": str(customer.id)}})):
            return customer
    raise AssertionError("every customer fell in the holdout")


def planned_email(db, *, amount_minor: int, failed_at: datetime, florida: bool = False) -> OutboxMessage:  # type: ignore[no-untyped-def]
    """A high-value failure planned with the standard policy when it happened; its first step (an email, 1h later)."""
    version = activate_text("standard", STANDARD, actor=None, note="test set-up")
    policy = compiled(version)
    place = ({"region": "FL", "postal_code": "33101", "phone_e164": "+13055550142"} if florida
             else {"region": "NY", "postal_code": "10001", "phone_e164": "+12125550100"})
    customer = customer_outside_holdout(policy, successful_payments=3, lifetime_value_minor=30000,
                                        lifetime_value_currency="USD", **place)
    txn_id = f"ovr-{amount_minor}-{customer.id}"
    case = make_case(transaction=make_transaction(customer=customer, amount_minor=amount_minor,
                                                  failed_at=failed_at, gateway_transaction_id=txn_id))
    db.session.commit()
    assert plan_cases([case.id], now=failed_at)["planned"] == 1
    return db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id,
                                                             OutboxMessage.step_n == 1)).one()


def last_event(db, message_id: int, kind: str) -> MessageEvent:  # type: ignore[no-untyped-def]
    return db.session.scalars(sa.select(MessageEvent).where(MessageEvent.message_id == message_id,
                                                            MessageEvent.kind == kind)
                              .order_by(MessageEvent.id.desc())).first()


def test_the_override_sends_on_saturday_evening_at_planning(db):
    row = planned_email(db, amount_minor=250000, failed_at=at(SATURDAY, 19))
    assert row.channel == "email" and row.scheduled_for == at(SATURDAY, 20) and row.deferred_by == []
    assert row.contact_override == {"ignores": ["business_hours", "weekends"], "lines": [OVERRIDE_LINE]}
    assert db.session.get(RecoveryCase, row.case_id).plan["override"]["lines"] == [OVERRIDE_LINE]


def test_the_override_holds_when_a_worker_sends_late(db, channels):
    # planned at 12:50 for 13:50 (inside Saturday's business hours); the worker only gets to it at 20:30
    row = planned_email(db, amount_minor=250000, failed_at=at(SATURDAY, 12, 50))
    mid = row.id
    assert row.scheduled_for == at(SATURDAY, 13, 50)
    report = dispatch_due(now=at(SATURDAY, 20, 30))
    sent = db.session.get(OutboxMessage, mid)
    assert report.get("sent") == 1 and sent.state == "sent", report
    assert channels.smtp.count(f"m{mid}") == 1
    attempt = last_event(db, mid, "attempt").provider_payload
    assert attempt["override"] == {"ignores": ["business_hours", "weekends"], "lines": [OVERRIDE_LINE]}


def test_without_the_override_a_late_row_waits_for_business_hours_and_says_why(db, channels):
    row = planned_email(db, amount_minor=90000, failed_at=at(SATURDAY, 12, 50))
    mid, case_id = row.id, row.case_id
    assert row.scheduled_for == at(SATURDAY, 13, 50) and row.contact_override is None
    report = dispatch_due(now=at(SATURDAY, 20, 30))
    waiting = db.session.get(OutboxMessage, mid)
    assert report.get("deferred") == 1 and waiting.state == "scheduled"
    monday_9am = at(SATURDAY + timedelta(days=2), 9)
    assert waiting.scheduled_for == monday_9am and waiting.deferred_by == ["business_hours"]
    deferred = last_event(db, mid, "deferred").provider_payload
    assert deferred["reasons"] == ["business_hours"]
    assert deferred["held_by"] == [{"reason": "business_hours", "source": "policy", "line": BUSINESS_HOURS_LINE}]
    assert datetime.fromisoformat(deferred["until"]) == monday_9am
    assert channels.smtp.received() == []
    [entry] = [e for e in case_timeline(db.session.get(RecoveryCase, case_id))
               if e.kind == "event" and e.title == "deferred"]
    assert entry.detail["reasons"] == ["business_hours"] and entry.detail["held_by"][0]["line"] == BUSINESS_HOURS_LINE


def test_quiet_hours_and_the_legal_window_still_defer_an_override(db, channels):
    # Florida: the policy's quiet hours there begin at 20:00, and the law's window closes at 20:00
    mid = planned_email(db, amount_minor=250000, failed_at=at(SATURDAY, 12, 50), florida=True).id
    report = dispatch_due(now=at(SATURDAY, 20, 30))
    waiting = db.session.get(OutboxMessage, mid)
    assert report.get("deferred") == 1 and channels.smtp.received() == []
    # Sunday 08:00: the night is closed to everyone; Sunday's closed business hours are lifted by the override
    assert waiting.scheduled_for == at(SATURDAY + timedelta(days=1), 8)
    deferred = last_event(db, mid, "deferred").provider_payload
    assert set(deferred["reasons"]) == {"legal_window", "quiet_hours"}
    sources = {h["reason"]: h for h in deferred["held_by"]}
    assert sources["quiet_hours"]["line"] == FLORIDA_QUIET_LINE and sources["legal_window"]["source"] == "law"
    assert deferred["override"]["lines"] == [OVERRIDE_LINE]


def test_a_worker_a_few_seconds_before_quiet_hours_end_waits_for_them_to_end(db, channels):
    # Sunday: the night closes at 08:00 for everyone; no grace before it (a CI chaos month sent at 07:59 once)
    sunday = SATURDAY + timedelta(days=1)
    mid = planned_email(db, amount_minor=250000, failed_at=at(SATURDAY, 12, 50), florida=True).id
    early = at(sunday, 7, 59) + timedelta(seconds=30)
    report = dispatch_due(now=early)
    waiting = db.session.get(OutboxMessage, mid)
    assert report.get("deferred") == 1 and channels.smtp.received() == [], report
    assert waiting.scheduled_for == at(sunday, 8)
    assert dispatch_due(now=at(sunday, 8)).get("sent") == 1
    assert channels.smtp.count(f"m{mid}") == 1
