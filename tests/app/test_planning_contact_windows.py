"""The contact_windows setting (admin) is the default the planner and the backtest use; the policy overrides it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app.models import OutboxMessage, RecoveryCase
from app.recovery.planning import plan_cases
from app.recovery.policies import activate_text
from app.settings import save_setting
from tests.builders import make_case, make_customer, make_transaction

MIAMI = ZoneInfo("America/New_York")
FRIDAY_EVENING = datetime(2026, 12, 4, 19, 30, tzinfo=MIAMI).astimezone(UTC)

POLICY = """policy "windows"
  segment everyone when transaction.amount >= 0 USD
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""
WINDOWS = {
    "*": {"quiet_hours": "21:00-08:00"},
    "US-FL": {"business_hours": "mon-fri 09:00-17:00, sat 10:00-14:00", "blackout_dates": ["2026-12-05"]},
}


def _first_send(db, source: str) -> OutboxMessage:  # type: ignore[no-untyped-def]
    activate_text("windows", source, actor=None, note="test set-up")
    customer = make_customer(country="US", region="FL", postal_code="33101", timezone_explicit="America/New_York")
    case = make_case(transaction=make_transaction(customer=customer, failed_at=FRIDAY_EVENING))
    db.session.commit()
    assert plan_cases([case.id], now=FRIDAY_EVENING)["planned"] == 1
    return db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id, OutboxMessage.channel == "email")
    ).one()


def test_without_saved_settings_nothing_changes(db):
    row = _first_send(db, POLICY)
    assert row.scheduled_for == FRIDAY_EVENING and row.deferred_by == []


def test_saved_windows_defer_the_plan_by_business_hours_and_blackout_dates(db):
    save_setting("contact_windows", WINDOWS, actor="admin@example.com")
    row = _first_send(db, POLICY)
    # Friday 19:30 is after Florida's 17:00; Saturday the 5th is a blackout date; Sunday is closed
    assert row.scheduled_for.astimezone(MIAMI) == datetime(2026, 12, 7, 9, 0, tzinfo=MIAMI)
    assert {"business_hours", "blackout"} <= set(row.deferred_by)
    assert db.session.get(RecoveryCase, row.case_id).plan["steps"][0]["deferred_by"] == row.deferred_by


def test_the_policy_own_hours_override_the_settings(db):
    save_setting("contact_windows", WINDOWS, actor="admin@example.com")
    row = _first_send(db, POLICY.replace("  plan for", "  business hours mon-sun 08:00-20:00\n  plan for"))
    assert row.scheduled_for == FRIDAY_EVENING  # 19:30 is inside the policy's own hours; no blackout that day
