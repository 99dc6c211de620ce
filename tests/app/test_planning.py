"""A new case is planned with the active policy version into scheduled outbox rows that name their rule."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from app.models import Customer, OutboxMessage, RecoveryCase
from app.payments.receipts import RECEIPT_TEMPLATE
from app.recovery.planning import case_facts, contact_history, plan_cases
from app.recovery.policies import activate_text, compiled
from rules.plan import Plan
from rules.planner import assignment_unit, in_holdout
from rules.policy import CompiledPolicy
from tests.builders import make_case, make_customer, make_message, make_transaction

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
NOW = datetime(2026, 11, 27, 1, 30, tzinfo=UTC)


def customer_outside_holdout(policy: CompiledPolicy, **fields) -> Customer:  # type: ignore[no-untyped-def]
    """A new customer the policy's holdout leaves out (drawn by customer, whose id the database gives)."""
    for _ in range(100):
        customer = make_customer(**fields)
        if not in_holdout(policy, assignment_unit({"customer": {"id": str(customer.id)}})):
            return customer
    raise AssertionError("every customer fell in the holdout")


def test_a_case_waits_when_no_policy_is_active(db):
    case = make_case()
    db.session.commit()
    assert plan_cases([case.id], now=NOW)["waiting"] == 1
    assert db.session.get(RecoveryCase, case.id).plan is None


def test_planning_writes_one_outbox_row_per_step_once(db):
    version = activate_text("standard", STANDARD, actor=None, note="test set-up")
    # outside the policy's 5% holdout, drawn by customer (whose id the database gives: SQLite and MariaDB differ)
    customer = customer_outside_holdout(compiled(version), successful_payments=3, country="US", region="FL",
                                        postal_code="33101")
    tx = make_transaction(customer=customer, amount_minor=4900, failed_at=datetime(2026, 11, 27, 1, 25, tzinfo=UTC),
                          gateway_transaction_id="plan-once-1")
    case = make_case(transaction=tx)
    db.session.commit()
    first = plan_cases([case.id], now=NOW)
    again = plan_cases([case.id], now=NOW)
    assert first["planned"] == 1 and again["planned"] == 0
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id).order_by(OutboxMessage.id)
    ).all()
    planned = db.session.get(RecoveryCase, case.id)
    people = [r for r in rows if r.channel in ("email", "sms", "whatsapp")]
    assert people and len(people) == len([s for s in planned.plan["steps"] if s.get("channel")])
    for row in people:
        assert row.policy_version_id == version.id and row.rule_line
        assert STANDARD.splitlines()[row.rule_line - 1].strip().startswith("step")
        assert row.scheduled_for >= NOW
        assert row.idempotency_key == f"case:{case.id}:step:{row.step_n}"
    # nothing before 08:00 in Miami (13:00 UTC in November)
    assert all(r.scheduled_for.hour >= 13 or r.scheduled_for.date() > NOW.date() for r in people)


def test_facts_follow_design_md(db):
    case = make_case()
    db.session.commit()
    facts = case_facts(case, NOW).to_json()
    assert facts["now"] == "2026-11-27T01:30:00Z"
    assert facts["transaction"]["amount"] == "249.00" and facts["transaction"]["currency"] == "USD"
    assert facts["customer"]["opted_out"] == []


def test_a_receipt_is_no_reminder_the_cadence_caps_count(db):
    """The customer paid another order an hour ago: the receipt they got is not in the contact history the planner
    counts the caps against; the reminder they got before it is."""
    customer = make_customer()
    paid = make_case(transaction=make_transaction(customer=customer), state="recovered")
    reminder = make_message(case=paid, channel="sms", state="sent", sent_at=NOW - timedelta(hours=3),
                            scheduled_for=NOW - timedelta(hours=3))
    make_message(case=paid, channel="email", template=RECEIPT_TEMPLATE, step_n=None, state="sent",
                 sent_at=NOW - timedelta(hours=1), scheduled_for=NOW - timedelta(hours=1))
    case = make_case(transaction=make_transaction(customer=customer))
    db.session.commit()
    expected = [(reminder.sent_at, "sms")]
    assert [(r.at, r.channel) for r in contact_history(customer.id, NOW)] == expected
    assert [(r.at, r.channel) for r in case_facts(case, NOW).sent] == expected


def test_the_stored_plan_reads_back_as_the_plan_made(db):
    version = activate_text("standard", STANDARD, actor=None, note="test set-up")
    customer = customer_outside_holdout(compiled(version), successful_payments=3, country="US", region="FL",
                                        postal_code="33101")
    tx = make_transaction(customer=customer, amount_minor=4900, failed_at=datetime(2026, 11, 27, 1, 25, tzinfo=UTC),
                          gateway_transaction_id="plan-once-1")
    case = make_case(transaction=tx)
    db.session.commit()
    plan_cases([case.id], now=NOW)
    db.session.expire_all()
    stored = db.session.get(RecoveryCase, case.id)
    plan = Plan.from_json(stored.plan)
    assert Plan.from_json(plan.to_json()) == plan and plan.to_json() == stored.plan
    assert plan.give_up_delay == timedelta(days=14) and stored.give_up_at == tx.failed_at + timedelta(days=14)
    rows = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id,
                                                            OutboxMessage.step_n.is_not(None))).all()
    assert {(r.step_n, r.scheduled_for) for r in rows} == {(s.n, s.send_at) for s in plan.steps}
