"""Operators' actions on a case (app.recovery.case_actions), on both databases: each does what it says, is audited,
and a
second try (or bad input) gets a clear error with nothing half-written. "Send the next step now" lifts business
hours and cadence, never quiet hours, legal windows or opt-outs; a paused case is never dispatched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.models import AuditEntry, CaseTransition, Customer, OutboxMessage, PaymentLink, RecoveryCase
from app.outbox.claim import claim_due
from app.outbox.consent import opt_out
from app.outbox.prepare import prepare_batch
from app.outbox.run import dispatch_due
from app.payments.receipts import RECEIPT_TEMPLATE
from app.recovery.case_actions import (
    CaseActionError,
    _sent_to,
    cancel_case,
    mark_paid_elsewhere,
    pause_case,
    payment_link,
    resume_case,
    send_next_step_now,
)
from app.recovery.case_lifecycle import expire_due_cases
from app.recovery.case_timeline import case_timeline
from app.recovery.planning import plan_cases
from app.recovery.policies import activate_text, compiled
from rules.planner import assignment_unit, in_holdout
from rules.policy import CompiledPolicy
from tests.builders import make_case, make_customer, make_message, make_transaction

STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
NEW_YORK = ZoneInfo("America/New_York")
SATURDAY = datetime(2026, 12, 5, tzinfo=NEW_YORK)
OPERATOR = "olga.operator@example.com"


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute).astimezone(UTC)


def customer_outside_holdout(policy: CompiledPolicy, **fields) -> Customer:  # type: ignore[no-untyped-def]
    """A new customer the policy's holdout leaves out (drawn by customer, whose id the database gives)."""
    for _ in range(100):
        customer = make_customer(**fields)
        if not in_holdout(policy, assignment_unit({"customer": {"id": str(customer.id)}})):
            return customer
    raise AssertionError("every customer fell in the holdout")


def planned_case(db, *, failed_at: datetime = None, amount_minor: int = 90000) -> int:  # type: ignore[no-untyped-def,assignment]
    """A high-value failure (no urgent override) planned with the standard policy when it happened: on Saturday
    evening its first email waits for Monday's business hours."""
    failed_at = failed_at or at(SATURDAY, 19)
    policy = compiled(activate_text("standard", STANDARD, actor=None, note="test set-up"))
    customer = customer_outside_holdout(policy, region="NY", postal_code="10001", phone_e164="+12125550100",
                                        successful_payments=3)
    txn_id = f"act-{customer.id}"
    case = make_case(transaction=make_transaction(customer=customer, amount_minor=amount_minor, failed_at=failed_at,
                                                  gateway_transaction_id=txn_id, order_id=f"order-{txn_id}"))
    db.session.commit()
    assert plan_cases([case.id], now=failed_at)["planned"] == 1
    return case.id


def rows(db, case_id: int) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case_id)
                                   .order_by(OutboxMessage.scheduled_for, OutboxMessage.id)))


def people(db, case_id: int) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    return [r for r in rows(db, case_id) if r.channel in ("email", "sms", "whatsapp")]


def audited(db, action: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def snapshot(db, case_id: int) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """Everything an action may write: to check that a refused one wrote nothing."""
    db.session.expire_all()
    case = db.session.get(RecoveryCase, case_id)
    return ((case.state, case.paused_at, case.recovered_amount_minor, case.recovered_via, case.give_up_at),
            [(r.id, r.state, r.scheduled_for, r.contact_override) for r in rows(db, case_id)],
            db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)),
            db.session.scalar(sa.select(sa.func.count()).select_from(CaseTransition)),
            db.session.scalar(sa.select(sa.func.count()).select_from(PaymentLink)))


# -- send the next step now ------------------------------------------------------------------------------------------
def test_send_now_goes_out_of_business_hours_and_past_the_cadence_cap(db, channels):
    case_id = planned_case(db)
    first = people(db, case_id)[0]
    first_id = first.id
    assert first.scheduled_for == at(SATURDAY + timedelta(days=2), 9)  # Monday: Saturday evening is closed
    # the customer heard from us two hours ago about another payment: the policy's "max 1 per day" would wait
    other = make_case(transaction=make_transaction(customer_id=db.session.get(RecoveryCase, case_id).customer_id))
    make_message(case=other, channel="sms", state="sent", sent_at=at(SATURDAY, 18), scheduled_for=at(SATURDAY, 18))
    db.session.commit()

    result = send_next_step_now(case_id, actor=OPERATOR, now=at(SATURDAY, 20))
    assert result.message_id == first_id and result.at_once and result.send_at == at(SATURDAY, 20)
    report = dispatch_due(now=at(SATURDAY, 20, 1))
    assert report.get("sent") == 1, report
    assert channels.smtp.count(f"m{first_id}") == 1
    row = db.session.get(OutboxMessage, first_id)
    assert row.state == "sent" and row.contact_override["by"] == OPERATOR
    [entry] = audited(db, "case.send_now")
    assert entry.actor == OPERATOR and entry.target_type == "recovery_case" and entry.target_id == str(case_id)
    story = case_timeline(db.session.get(RecoveryCase, case_id))
    assert any(e.kind == "action" and e.title == "send_now" and e.detail["actor"] == OPERATOR for e in story)


def test_send_now_in_quiet_hours_waits_for_the_earliest_legal_moment(db, channels):
    case_id = planned_case(db)
    result = send_next_step_now(case_id, actor=OPERATOR, now=at(SATURDAY, 22))
    sunday_8am = at(SATURDAY + timedelta(days=1), 8)
    assert not result.at_once and result.send_at == sunday_8am
    assert set(result.reasons) == {"quiet_hours", "legal_window"}
    assert {h["source"] for h in result.held_by} == {"policy", "law"}
    assert dispatch_due(now=at(SATURDAY, 22, 5))["claimed"] == 0
    assert channels.smtp.received() == []
    report = dispatch_due(now=sunday_8am + timedelta(minutes=1))  # Sunday: business hours lifted, not the night
    assert report.get("sent") == 1, report


def test_send_now_never_uses_an_opted_out_channel(db, channels):
    case_id = planned_case(db)
    opt_out(db.session.get(RecoveryCase, case_id).customer_id, ["email"], source="operator")
    db.session.commit()
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match="opted out of email"):
        send_next_step_now(case_id, actor=OPERATOR, now=at(SATURDAY, 20))
    assert snapshot(db, case_id) == before


def test_send_now_counts_no_receipt_against_the_caps(db):
    """What "send now" counts against the legal caps is what reached the customer as a reminder: a receipt is none."""
    customer = make_customer()
    paid = make_case(transaction=make_transaction(customer=customer), state="recovered")
    reminder = make_message(case=paid, channel="sms", state="sent", sent_at=at(SATURDAY, 15),
                            scheduled_for=at(SATURDAY, 15))
    make_message(case=paid, channel="email", template=RECEIPT_TEMPLATE, step_n=None, state="sent",
                 sent_at=at(SATURDAY, 17), scheduled_for=at(SATURDAY, 17))
    db.session.commit()
    assert [(r.at, r.channel) for r in _sent_to(customer.id, at(SATURDAY, 20))] == [(reminder.sent_at, "sms")]


# -- pause and resume ------------------------------------------------------------------------------------------------
def test_a_paused_case_is_never_dispatched_and_pausing_twice_is_refused(db, channels):
    case_id = planned_case(db)
    waiting = len(people(db, case_id))
    assert pause_case(case_id, actor=OPERATOR, reason="customer disputes", now=at(SATURDAY, 20)) >= waiting
    assert {r.state for r in rows(db, case_id)} == {"paused"}
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match="already paused"):
        pause_case(case_id, actor=OPERATOR, now=at(SATURDAY, 21))
    assert snapshot(db, case_id) == before
    with pytest.raises(CaseActionError, match="resume it first|paused"):
        send_next_step_now(case_id, actor=OPERATOR, now=at(SATURDAY, 21))
    assert dispatch_due(now=at(SATURDAY + timedelta(days=30), 12))["claimed"] == 0
    assert channels.smtp.received() == [] and channels.twilio.received() == []
    assert len(audited(db, "case.pause")) == 1
    # nor does it expire while paused
    assert db.session.get(RecoveryCase, case_id).state == "open"


def test_a_message_claimed_just_before_the_pause_is_held_not_sent(db, app, channels):
    from app.outbox.senders import senders_for

    case_id = planned_case(db)
    monday = at(SATURDAY + timedelta(days=2), 9, 1)
    claimed = claim_due(monday, 10, token="worker-1")
    assert claimed
    pause_case(case_id, actor=OPERATOR, now=monday)
    ready, finished = prepare_batch(claimed, monday, token="worker-1", senders=senders_for(app))
    assert ready == [] and set(finished.values()) == {"paused"}
    assert {r.state for r in rows(db, case_id)} == {"paused"}
    assert channels.smtp.received() == []


def test_resume_moves_each_message_by_the_pause_then_by_the_rules(db, channels):
    case_id = planned_case(db)
    give_up = db.session.get(RecoveryCase, case_id).give_up_at
    planned = {r.id: r.scheduled_for for r in rows(db, case_id)}
    pause_case(case_id, actor=OPERATOR, now=at(SATURDAY, 20))
    moved = resume_case(case_id, actor=OPERATOR, now=at(SATURDAY + timedelta(days=3), 20))  # Tuesday 20:00
    case = db.session.get(RecoveryCase, case_id)
    assert case.paused_at is None and case.give_up_at == give_up + timedelta(days=3)
    assert {m.message_id for m in moved} == set(planned)
    for row in rows(db, case_id):
        assert row.state == "scheduled"
        assert row.scheduled_for >= planned[row.id] + timedelta(days=3)
    # the first email was due 37 hours after the pause (Monday 09:00): it goes 37 hours after the resume, Thursday
    first = people(db, case_id)[0]
    assert first.scheduled_for == at(SATURDAY + timedelta(days=5), 9)
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match="not paused"):
        resume_case(case_id, actor=OPERATOR, now=at(SATURDAY + timedelta(days=3), 21))
    assert snapshot(db, case_id) == before
    assert len(audited(db, "case.resume")) == 1


def test_a_paused_case_does_not_expire(db):
    case_id = planned_case(db)
    pause_case(case_id, actor=OPERATOR, now=at(SATURDAY, 20))
    assert expire_due_cases(at(SATURDAY + timedelta(days=60), 12)) == 0
    assert db.session.get(RecoveryCase, case_id).state == "open"


# -- payment link, paid elsewhere, cancel ----------------------------------------------------------------------------
def test_a_payment_link_to_copy_opens_the_case_payment_page(db, app):
    from app.payments.links import open_payment_link, resolve_short_code

    case_id = planned_case(db)
    url = payment_link(case_id, actor=OPERATOR)
    assert url.startswith("http://localhost/p/") or url.startswith("http://localhost/pay/")
    code = url.rsplit("/", 1)[1]
    short = resolve_short_code(code, app.config["SECRET_KEY"])
    token = short.token if short is not None else code
    assert open_payment_link(token, app.config["SECRET_KEY"], track=False).case.id == case_id
    [entry] = audited(db, "case.payment_link")
    assert code not in str(entry.details)  # the link itself is a secret: the audit log does not keep it


def test_paid_elsewhere_closes_the_case_once_and_cancels_what_is_left(db):
    case_id = planned_case(db)
    url = payment_link(case_id, actor=OPERATOR)
    case = mark_paid_elsewhere(case_id, "900.00", actor=OPERATOR, note="bank transfer", now=at(SATURDAY, 20))
    assert case.state == "recovered" and case.recovered_via == "elsewhere" and case.recovered_amount_minor == 90000
    assert case.recovered_message_id is None
    assert {r.state for r in rows(db, case_id)} == {"cancelled"}
    assert all(link.revoked_at is not None for link in db.session.scalars(sa.select(PaymentLink)))
    assert case.transitions[-1].actor == OPERATOR and "paid elsewhere" in case.transitions[-1].reason
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match="closed"):
        mark_paid_elsewhere(case_id, "900.00", actor=OPERATOR)
    assert snapshot(db, case_id) == before
    assert len(audited(db, "case.paid_elsewhere")) == 1
    assert url


def test_paid_elsewhere_waits_for_a_charge_under_way(db, app):
    """The payment page holds the case's charge lock across the gateway call: "paid elsewhere" must not close the
    case in the middle of it (an approved charge and a manual mark would both count)."""
    import threading
    import time

    from app.payments.charges import case_lock

    case_id = planned_case(db)
    held, release = threading.Event(), threading.Event()

    def charge_in_flight() -> None:
        with app.app_context(), case_lock(case_id):
            held.set()
            release.wait(10)

    charger = threading.Thread(target=charge_in_flight)
    charger.start()
    assert held.wait(10)
    threading.Timer(0.6, release.set).start()
    started = time.monotonic()
    case = mark_paid_elsewhere(case_id, "900.00", actor=OPERATOR)
    waited = time.monotonic() - started
    charger.join(10)
    assert waited >= 0.5, f"closed the case while a charge held its lock (waited {waited:.2f}s)"
    assert case.state == "recovered"


@pytest.mark.parametrize(("amount", "message"), [
    ("abc", "is not an amount"), ("0", "more than zero"), ("-5", "more than zero"), ("900.001", "more decimals"),
    ("1000.00", "more than the"), ("NaN", "more than zero"),
])
def test_paid_elsewhere_refuses_bad_amounts_and_writes_nothing(db, amount, message):
    case_id = planned_case(db)
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match=message):
        mark_paid_elsewhere(case_id, amount, actor=OPERATOR)
    assert snapshot(db, case_id) == before


def test_cancel_closes_the_case_and_cancels_its_messages_once(db):
    case_id = planned_case(db)
    pause_case(case_id, actor=OPERATOR, now=at(SATURDAY, 20))  # held messages are cancelled too
    assert cancel_case(case_id, actor=OPERATOR, reason="customer asked us to stop", now=at(SATURDAY, 21)) > 0
    case = db.session.get(RecoveryCase, case_id)
    assert case.state == "cancelled" and case.paused_at is None and case.closed_at is not None
    assert {r.state for r in rows(db, case_id)} == {"cancelled"}
    before = snapshot(db, case_id)
    with pytest.raises(CaseActionError, match="closed"):
        cancel_case(case_id, actor=OPERATOR)
    for action in (lambda: pause_case(case_id, actor=OPERATOR), lambda: payment_link(case_id, actor=OPERATOR),
                   lambda: send_next_step_now(case_id, actor=OPERATOR)):
        with pytest.raises(CaseActionError, match="closed"):
            action()
    assert snapshot(db, case_id) == before


def test_an_unknown_case_is_named(db):
    with pytest.raises(CaseActionError, match="no case #424242"):
        pause_case(424242, actor=OPERATOR)
