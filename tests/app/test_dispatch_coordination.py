"""What the dispatcher decides at send time, across a customer's messages: cadence caps over every channel,
one consolidated reminder for several open cases (also when it is retried), and nothing for a case paid meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.models import MessageEvent, OutboxMessage, RecoveryCase
from app.outbox.claim import claim_due
from app.outbox.run import dispatch_due
from app.recovery.case_lifecycle import cancel_pending
from app.recovery.cases import move_case
from app.recovery.policies import activate_text
from tests.app.test_dispatch import NOW, due_message, events
from tests.builders import make_case, make_customer, make_message, make_transaction

CAPPED = """policy "capped"
  segment everyone when transaction.amount >= 0 USD
  cadence max 1 per day across all channels
  plan for everyone
    step after 0m via email template "payment_failed"
    give up after 14d
  end
end
"""
#: 10:00 in New York on a working day (NOW, the day after Thanksgiving, is a Florida holiday the policy skips)
TUESDAY = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def open_case(customer, amount_minor: int = 24900) -> RecoveryCase:  # type: ignore[no-untyped-def]
    return make_case(transaction=make_transaction(customer=customer, amount_minor=amount_minor))


def payload(message_id: int, kind: str) -> dict:
    from app.extensions import db

    event = db.session.scalar(sa.select(MessageEvent).where(MessageEvent.message_id == message_id,
                                                            MessageEvent.kind == kind).order_by(MessageEvent.id))
    return event.provider_payload or {}


def pay(db, case_id: int) -> None:  # type: ignore[no-untyped-def]
    """What booking a full payment does to the case and its outbox (``app.payments.charges``)."""
    case = db.session.get(RecoveryCase, case_id)
    move_case(case, "recovered", reason="paid: order test (vault)", actor="customer")
    cancel_pending(case.id, "case recovered")
    db.session.commit()


# -- a: cadence caps hold across channels at send time ------------------------------------------------------------
def test_a_cap_used_up_on_another_channel_defers_the_next_message_and_sends_it_when_allowed(db, channels):
    version = activate_text("capped", CAPPED, actor=None, note="test set-up")
    capped = make_customer(email="capped@example.com", phone_e164="+13055550181")
    texted_at = TUESDAY - timedelta(hours=2)  # 08:00 in New York: an SMS about another case went out this morning
    make_message(case=open_case(capped), channel="sms", address=capped.phone_e164, state="sent", sent_at=texted_at,
                 scheduled_for=texted_at, policy_version_id=version.id)
    due = TUESDAY - timedelta(minutes=1)
    held = make_message(case=open_case(capped), channel="email", address=capped.email, scheduled_for=due,
                        policy_version_id=version.id)
    free = make_message(case=open_case(make_customer(email="free@example.com")), channel="email",
                        address="free@example.com", scheduled_for=due, policy_version_id=version.id)
    held_id, free_id = held.id, free.id
    db.session.commit()

    report = dispatch_due(now=TUESDAY)
    assert report["deferred"] == 1 and report["sent"] == 1  # same policy, same hour: only the cap tells them apart
    row = db.session.get(OutboxMessage, held_id)
    next_allowed = texted_at + timedelta(days=1)
    assert row.state == "scheduled" and row.claimed_by is None and row.scheduled_for == next_allowed
    assert events(held_id) == ["deferred"]
    assert payload(held_id, "deferred") == {  # when, and why: the policy's cadence statement (its line 3)
        "until": next_allowed.isoformat(), "channel": "email", "reasons": ["cadence"],
        "held_by": [{"reason": "cadence", "source": "policy", "line": 3}]}
    assert channels.smtp.received("capped@example.com") == [] and channels.smtp.count(f"m{held_id}") == 0
    assert channels.twilio.count(f"m{held_id}") == 0 and channels.whatsapp.count(f"m{held_id}") == 0
    assert channels.smtp.count(f"m{free_id}") == 1

    assert dispatch_due(now=next_allowed - timedelta(minutes=5))["claimed"] == 0
    assert dispatch_due(now=next_allowed)["sent"] == 1
    assert events(held_id) == ["deferred", "attempt", "sent"]
    assert channels.smtp.count(f"m{held_id}") == 1


# -- b: one reminder for several open cases, also when it is retried ----------------------------------------------
def test_a_consolidated_email_retried_after_a_temporary_failure_still_lists_the_other_case(db, channels):
    customer = make_customer(email="many@example.com")
    first = due_message(case=open_case(customer, 1500), channel="email", address=customer.email)
    later = due_message(case=open_case(customer, 2750), channel="email", address=customer.email,
                        scheduled_for=NOW + timedelta(hours=3))  # due within the consolidation window
    first_id, later_id, later_case, address = first.id, later.id, later.case_id, customer.email
    db.session.commit()
    # greylisted: every try of the first run (the sender tries 3 times) is refused with a 451 at RCPT TO
    channels.smtp.inject("rcpt_451", path=address, count=3)

    report = dispatch_due(now=NOW)
    assert report.get("retry") == 1 and "sent" not in report
    row = db.session.get(OutboxMessage, first_id)
    assert row.state == "scheduled" and row.attempts == 1 and row.error_code == "451"
    assert events(first_id) == ["consolidated", "attempt", "retry"]
    assert payload(first_id, "consolidated") == {"cases": [later_case], "messages": [later_id]}
    assert db.session.get(OutboxMessage, later_id).state == "merged"
    assert channels.smtp.received(address) == []

    report = dispatch_due(now=row.scheduled_for)
    assert report["sent"] == 1 and report["claimed"] == 1  # the retry only: the merged row is never claimed
    [mail] = channels.smtp.received(address)
    assert mail["reference"] == f"m{first_id}"
    assert "$15.00" in mail["text"] and "$27.50" in mail["text"] and mail["text"].count("/pay/") == 2
    assert events(first_id) == ["consolidated", "attempt", "retry", "attempt", "sent"]
    assert db.session.get(OutboxMessage, later_id).state == "merged" and events(later_id) == ["merged"]

    assert dispatch_due(now=NOW + timedelta(hours=4))["claimed"] == 0  # past the merged row's own time
    assert len(channels.smtp.received(address)) == 1 and channels.smtp.count(f"m{later_id}") == 0


def test_two_cases_due_at_the_same_time_go_as_one_email(db, channels):
    customer = make_customer(email="both@example.com")
    first = due_message(case=open_case(customer, 1500), channel="email", address="both@example.com")
    second = due_message(case=open_case(customer, 2750), channel="email", address="both@example.com")
    ids = {first.id, second.id}
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    [mail] = channels.smtp.received("both@example.com")
    assert "$15.00" in mail["text"] and "$27.50" in mail["text"]
    states = sorted(db.session.get(OutboxMessage, mid).state for mid in ids)
    assert states == ["merged", "sent"]


def test_a_temporary_refusal_of_the_message_content_is_retried_not_lost(db, channels):
    customer = make_customer(email="data451@example.com")
    message = due_message(case=open_case(customer), channel="email", address=customer.email)
    mid = message.id
    db.session.commit()
    channels.smtp.inject("data_451", path="data451@example.com", count=1)
    report = dispatch_due(now=NOW)
    assert "lost" not in report
    row = db.session.get(OutboxMessage, mid)
    if row.state == "scheduled":  # retried by the dispatcher rather than by the sender
        dispatch_due(now=row.scheduled_for)
        row = db.session.get(OutboxMessage, mid)
    assert row.state == "sent" and channels.smtp.count(f"m{mid}") == 1



def test_a_consolidated_reminder_lists_the_other_payments_in_the_customer_language(db, channels):
    customer = make_customer(email="lucia@example.es", country="ES", locale="es_ES")
    first = due_message(case=open_case(customer, 1500), channel="email", address=customer.email, locale="es_ES")
    due_message(case=open_case(customer, 2750), channel="email", address=customer.email, locale="es_ES",
                scheduled_for=NOW + timedelta(hours=3))
    first_id, address = first.id, customer.email
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    [mail] = channels.smtp.received(address)
    assert mail["reference"] == f"m{first_id}"
    assert "También tiene otros pagos pendientes:" in mail["text"]
    assert "You also have other open payments" not in mail["text"]

# -- c: a case paid before its reminder goes ----------------------------------------------------------------------
def test_a_case_paid_while_its_reminder_is_claimed_is_not_contacted(db, channels):
    customer = make_customer(email="paid@example.com")
    message = due_message(case=open_case(customer), channel="email", address=customer.email)
    mid, case_id = message.id, message.case_id
    db.session.commit()
    # a worker claims the reminder and dies; the payment lands meanwhile (it cancels only what is still scheduled)
    assert claim_due(NOW, 10, token="dead-host:1:abc") == [mid]
    pay(db, case_id)
    assert db.session.get(OutboxMessage, mid).state == "claimed"
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == mid)
                       .values(claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    db.session.commit()

    report = dispatch_due(now=NOW)
    assert report["reclaimed"] == 1 and report["cancelled"] == 1 and "sent" not in report
    row = db.session.get(OutboxMessage, mid)
    assert row.state == "cancelled" and row.attempts == 0 and row.sent_at is None
    assert events(mid) == ["reclaimed", "cancelled"] and payload(mid, "cancelled") == {"why": "case is recovered"}
    assert channels.smtp.received() == [] and channels.smtp.count(f"m{mid}") == 0
    assert db.session.get(RecoveryCase, case_id).state == "recovered"


def test_a_case_paid_after_its_reminder_was_merged_is_left_out_of_the_retry(db, channels):
    customer = make_customer(email="partly@example.com")
    first = due_message(case=open_case(customer, 1500), channel="email", address=customer.email)
    later = due_message(case=open_case(customer, 2750), channel="email", address=customer.email,
                        scheduled_for=NOW + timedelta(hours=3))
    first_id, later_id, later_case, address = first.id, later.id, later.case_id, customer.email
    db.session.commit()
    channels.smtp.inject("rcpt_451", path=address, count=3)
    assert dispatch_due(now=NOW).get("retry") == 1
    assert db.session.get(OutboxMessage, later_id).state == "merged"
    pay(db, later_case)

    retry_at = db.session.get(OutboxMessage, first_id).scheduled_for
    assert dispatch_due(now=retry_at)["sent"] == 1
    [mail] = channels.smtp.received(address)
    assert "$15.00" in mail["text"] and "$27.50" not in mail["text"] and mail["text"].count("/pay/") == 1
    assert "other open payments" not in mail["text"]
    assert db.session.get(OutboxMessage, later_id).state == "merged" and channels.smtp.count(f"m{later_id}") == 0
