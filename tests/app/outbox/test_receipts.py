"""A receipt is an outbox row like any reminder: queued with an event, sent at once through the dispatcher's path
(claim, attempt, the email checkpoint), retried when the mail server says later, sent once however often it is
asked for, and picked up by the periodic dispatch when the request could not send it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.models import MessageEvent, OutboxMessage, Payment
from app.models.types import utcnow
from app.outbox.consent import opt_out
from app.outbox.run import dispatch_due
from app.payments.receipts import RECEIPT_TEMPLATE, queue_receipt, receipt_reference, send_receipt
from tests.builders import make_case, make_customer, make_message, make_transaction


def paid_case(db, **customer):  # type: ignore[no-untyped-def]
    """A case paid in full by the card on file (as app.payments.charges records it), and its approved payment."""
    case = make_case(transaction=make_transaction(customer=make_customer(**customer)), state="recovered")
    payment = Payment(case_id=case.id, order_id=f"rc{case.id}-test", method="vault", initiator="customer",
                      amount_minor=case.amount_due_minor, currency=case.currency, state="approved",
                      created_at=utcnow(), completed_at=utcnow())
    db.session.add(payment)
    db.session.commit()
    return case, payment


def events(message_id):  # type: ignore[no-untyped-def]
    from app.extensions import db

    return list(db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message_id)
                                   .order_by(MessageEvent.id)))


def test_a_receipt_is_an_outbox_row_with_events_sent_at_once_and_only_once(db, channels):
    case, payment = paid_case(db)
    address = case.customer.email
    mid = send_receipt(payment.id)
    row = db.session.get(OutboxMessage, mid)
    assert (row.template, row.channel, row.state, row.case_id) == (RECEIPT_TEMPLATE, "email", "sent", case.id)
    assert events(mid) == ["queued", "attempt", "sent"]
    [mail] = channels.smtp.received(address)
    assert mail["reference"] == f"m{mid}" and mail["subject"].startswith("Payment received")
    assert receipt_reference(payment.id) in mail["text"]

    assert send_receipt(payment.id) == mid and queue_receipt(payment.id) == mid  # the payment recorded again
    assert dispatch_due(now=utcnow() + timedelta(days=1))["claimed"] == 0
    assert channels.smtp.count(f"m{mid}") == 1
    assert db.session.scalar(sa.select(sa.func.count(OutboxMessage.id))
                             .where(OutboxMessage.template == RECEIPT_TEMPLATE)) == 1


def test_a_receipt_the_mail_server_defers_is_retried_and_arrives_once(db, channels):
    case, payment = paid_case(db)
    address = case.customer.email
    channels.smtp.inject("rcpt_451", path=address, count=3)  # every try of the sender's first attempt
    mid = send_receipt(payment.id)
    row = db.session.get(OutboxMessage, mid)
    assert row.state == "scheduled" and row.attempts == 1 and events(mid) == ["queued", "attempt", "retry"]
    assert channels.smtp.received(address) == []
    report = dispatch_due(now=row.scheduled_for)
    assert report["sent"] == 1
    assert events(mid) == ["queued", "attempt", "retry", "attempt", "sent"]
    assert channels.smtp.count(f"m{mid}") == 1


def test_a_receipt_the_request_could_not_send_goes_with_the_periodic_dispatch(db, channels, monkeypatch):
    from app.queue import InProcessQueue

    def broken(*args, **kwargs):
        raise ConnectionError("the queue is down")

    monkeypatch.setattr(InProcessQueue, "enqueue", broken)
    case, payment = paid_case(db)
    mid = send_receipt(payment.id)  # the payment is not turned into an error
    assert db.session.get(OutboxMessage, mid).state == "scheduled" and channels.smtp.received() == []
    assert dispatch_due(now=datetime.now(UTC) + timedelta(seconds=1))["sent"] == 1
    assert channels.smtp.count(f"m{mid}") == 1 and events(mid) == ["queued", "attempt", "sent"]


def test_a_receipt_goes_to_a_customer_who_opted_out_of_reminders_and_counts_against_no_cap(db, channels):
    case, payment = paid_case(db)
    opt_out(case.customer_id, ["email"], source="one_click")
    make_message(case=make_case(transaction=make_transaction(customer=case.customer)), channel="sms",
                            scheduled_for=utcnow() - timedelta(minutes=1))
    db.session.commit()
    mid = send_receipt(payment.id)
    assert db.session.get(OutboxMessage, mid).state == "sent" and channels.smtp.count(f"m{mid}") == 1
    from app.outbox.check import contact_histories

    history = contact_histories({case.customer_id}, utcnow())
    assert case.customer_id not in history  # the receipt is no reminder


def test_no_receipt_without_an_approved_payment_or_an_address(db, channels):
    case, payment = paid_case(db, email=None)
    assert send_receipt(payment.id) is None
    declined = Payment(case_id=case.id, order_id=f"rc{case.id}-declined", method="vault", initiator="customer",
                       amount_minor=100, currency="USD", state="declined", created_at=utcnow())
    db.session.add(declined)
    db.session.commit()
    assert queue_receipt(declined.id) is None and queue_receipt(10**9) is None
    assert channels.smtp.received() == []


def test_sending_now_takes_only_a_due_waiting_row(db, channels):
    from app.outbox.run import send_now

    later = make_message(channel="email", scheduled_for=utcnow() + timedelta(hours=1))
    db.session.commit()
    assert send_now(later.id) == "gone" and channels.smtp.received() == []
    case, payment = paid_case(db)
    mid = send_receipt(payment.id)
    assert send_now(mid) == "gone"  # sent already: the claim refuses it
    assert channels.smtp.count(f"m{mid}") == 1
