"""Issue 15, low finding: a message that can never be built (a CRLF in the customer's email address, a U+2028 in
a name that lands in the subject) raised in the sender, the row stayed in ``sending``, its lease ran out and the
dispatcher claimed it again: retried for ever. Now it goes to ``review`` after its one attempt, with the reason, and
nothing sends it again until a person does. So does a message a provider refuses for good with no channel left.

Through the real dispatcher, the real email and SMS clients and the simulators, on SQLite and MariaDB (the rows are
made directly: data stored before ingest checked it, or put there by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.models import MessageEvent, OutboxMessage
from app.outbox.reconcile import reclaim_stale
from app.outbox.review import resolve_review
from app.outbox.run import dispatch_due
from tests.builders import make_case, make_customer, make_message, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sims():
    from tests.providers import ChannelSimulators

    started = ChannelSimulators().start()
    yield started
    started.stop()


@pytest.fixture
def channels(app, sims):
    sims.reset()
    sims.configure(app)
    return sims


def events(db, message_id):  # type: ignore[no-untyped-def]
    return list(db.session.scalars(sa.select(MessageEvent).where(MessageEvent.message_id == message_id)
                                   .order_by(MessageEvent.id)))


def due(customer, **values):  # type: ignore[no-untyped-def]
    case = make_case(transaction=make_transaction(customer=customer))
    return make_message(case=case, scheduled_for=NOW - timedelta(minutes=1), **values)


def fresh(db, message_id):  # type: ignore[no-untyped-def]
    db.session.expire_all()
    return db.session.get(OutboxMessage, message_id)


UNBUILDABLE = {
    "CRLF in the email address": ({"email": "ana@example.com\r\nBcc: everyone@example.net"}, "payment_failed"),
    "U+2028 in a name in the subject": ({"first_name": "Ana\u2028Bcc: everyone@example.net"}, "vip_personal"),
}


@pytest.mark.parametrize("case", list(UNBUILDABLE), ids=list(UNBUILDABLE))
def test_an_unbuildable_message_goes_to_review_after_one_attempt_and_is_never_retried(db, channels, case):
    fields, template = UNBUILDABLE[case]
    message = due(make_customer(**fields), channel="email", template=template)
    mid = message.id
    db.session.commit()

    report = dispatch_due(now=NOW)

    assert report.get("review") == 1, report
    row = fresh(db, mid)
    assert row.state == "review" and row.attempts == 1 and row.error_code == "unbuildable"
    kinds = [e.kind for e in events(db, mid)]
    assert kinds == ["attempt", "review"]
    why = events(db, mid)[-1].provider_payload["why"]
    assert "cannot be built" in why and "not sent again" in why
    assert channels.smtp.received() == []  # nothing, and certainly no Bcc, went out

    # later runs, a lapsed lease, a day on: nothing claims it again
    assert reclaim_stale() == 0
    for later in (NOW, NOW + timedelta(hours=1), NOW + timedelta(days=1)):
        assert dispatch_due(now=later)["claimed"] == 0
    row = fresh(db, mid)
    assert row.state == "review" and row.attempts == 1
    assert [e.kind for e in events(db, mid)] == kinds
    assert channels.smtp.received() == []


def test_a_person_sending_it_again_gives_it_one_more_attempt_only(db, channels):
    message = due(make_customer(email="ana@example.com\nBcc: x@example.net"), channel="email")
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW).get("review") == 1
    assert resolve_review(mid, delivered=False, actor="op@example.com")
    assert dispatch_due(now=NOW).get("review") == 1  # the person's one more try, back to review at once
    assert dispatch_due(now=NOW + timedelta(days=1))["claimed"] == 0
    row = fresh(db, mid)
    assert row.state == "review" and row.attempts == 2
    assert channels.smtp.received() == []


def test_a_good_message_beside_it_still_goes(db, channels):
    bad = due(make_customer(email="ana@example.com\r\nBcc: x@example.net"), channel="email")
    good = due(make_customer(), channel="email")
    ids = bad.id, good.id
    db.session.commit()
    report = dispatch_due(now=NOW)
    assert report.get("review") == 1 and report.get("sent") == 1, report
    assert fresh(db, ids[0]).state == "review" and fresh(db, ids[1]).state == "sent"
    assert channels.smtp.count(f"m{ids[1]}") == 1 and len(channels.smtp.received()) == 1


def test_a_permanent_provider_refusal_with_no_channel_left_goes_to_review_not_retry(db, channels):
    channels.twilio.set_number("+13055550198", "invalid")
    message = due(make_customer(phone_e164="+13055550198"), channel="sms")
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW).get("review") == 1
    row = fresh(db, mid)
    assert row.state == "review" and row.attempts == 1
    assert [e.kind for e in events(db, mid)] == ["attempt", "failed", "review"]
    assert "refused it for good" in events(db, mid)[-1].provider_payload["why"]
    assert dispatch_due(now=NOW + timedelta(days=1))["claimed"] == 0
    assert fresh(db, mid).attempts == 1
