"""The dispatcher sends due outbox messages through the real channel clients to the simulators, once each."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.models import MessageEvent, OutboxMessage, RecoveryCase
from app.outbox.claim import claim_due
from app.outbox.consent import opt_out
from app.outbox.run import dispatch_due
from tests.builders import make_case, make_customer, make_message, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


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
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in mail["raw"]  # RFC 8058 one-click
    sent = db.session.get(OutboxMessage, mid)
    assert sent.state == "sent" and sent.provider_message_id and sent.sent_at is not None
    assert events(mid) == ["attempt", "sent"]
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
    assert events(mid) == ["fallback", "attempt", "sent"]


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
    assert events(mid) == ["attempt", "failed", "fallback", "attempt", "sent"]
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
    from app.models import EscalationTask, Team
    from app.recovery.case_lifecycle import run_due_escalations

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
    from app.recovery.case_lifecycle import expire_due_cases

    case = make_case(state="contacting", give_up_at=NOW - timedelta(hours=1))
    later = make_message(case=case, scheduled_for=NOW + timedelta(days=1))
    db.session.commit()
    assert expire_due_cases(NOW) == 1
    assert db.session.get(RecoveryCase, case.id).state == "expired"
    assert db.session.get(OutboxMessage, later.id).state == "cancelled"


# -- whatever crashes: rows a dead worker left behind ---------------------------------------------------------------
def expire_leases(db, *ids):
    """What time does to a dead worker's rows: their lease runs out."""
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(claimed_at=datetime.now(UTC) - timedelta(hours=1))
    )
    db.session.commit()


def left_by_a_dead_worker(db, message, state):
    """As a worker that died an hour ago left it (set as the database would have it: no move is checked here)."""
    db.session.flush()
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == message.id).values(
        state=state, claimed_by="dead-host:1:abc", claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    db.session.commit()


def die_after_the_provider_call(monkeypatch):
    """The worker sends, then dies before it can record anything (the row stays as it was: sending)."""
    import app.outbox.run as run

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(run, "record_batch", crash)


def test_a_claim_left_by_a_dead_worker_goes_out_once(db, channels):
    message = due_message(channel="email")
    mid = message.id
    left_by_a_dead_worker(db, message, "claimed")
    report = dispatch_due(now=NOW)
    assert report["reclaimed"] == 1 and report["sent"] == 1
    assert channels.smtp.count(f"m{mid}") == 1


def test_an_email_left_before_its_final_dot_was_not_delivered_and_goes_out_once(db, channels):
    message = due_message(channel="email")
    mid = message.id
    left_by_a_dead_worker(db, message, "sending")
    dispatch_due(now=NOW)
    assert channels.smtp.count(f"m{mid}") == 1
    assert db.session.get(OutboxMessage, mid).state == "sent"
    assert events(mid)[:2] == ["reclaimed", "attempt"]


def test_an_email_left_past_its_checkpoint_is_held_for_a_person_never_resent(db, channels):
    from app.outbox.review import resolve_review

    message = due_message(channel="email")
    mid = message.id
    left_by_a_dead_worker(db, message, "delivering")
    dispatch_due(now=NOW)
    assert db.session.get(OutboxMessage, mid).state == "review"
    dispatch_due(now=NOW)
    assert channels.smtp.count(f"m{mid}") == 0
    assert resolve_review(mid, delivered=False)
    dispatch_due(now=NOW)
    assert channels.smtp.count(f"m{mid}") == 1


def test_the_checkpoint_is_recorded_before_the_dot_and_a_lost_claim_sends_nothing(db, channels, monkeypatch):
    import app.outbox.send as send

    message = due_message(channel="email")
    mid = message.id
    db.session.commit()
    seen = []
    real = send._checkpoint

    def checkpoint(message_id, owner):
        # another worker took the row over (our lease ran out) just before the dot
        seen.append(db.session.get(OutboxMessage, message_id).state)
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == message_id)
                           .values(claimed_by="someone-else"))
        db.session.commit()
        return real(message_id, owner)

    monkeypatch.setattr(send, "_checkpoint", checkpoint)
    assert dispatch_due(now=NOW).get("lost") == 1
    assert seen == ["sending"]
    assert channels.smtp.count(f"m{mid}") == 0 and channels.smtp.received() == []


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_request_left_before_its_checkpoint_was_not_sent_and_goes_out_once(db, channels, monkeypatch, channel):
    """Rows wait in ``sending`` for a sending thread; the checkpoint moves each to ``delivering`` right before its
    request. One a dead worker left in ``sending`` never reached the provider: due again, nobody asked, no review."""
    import app.outbox.send as send

    customer = make_customer(phone_e164="+13055550177")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel=channel)
    mid = message.id
    db.session.commit()
    with monkeypatch.context() as patch:  # the worker dies while the row waits for a sending thread
        patch.setattr(send, "_checkpoint", lambda *args: (_ for _ in ()).throw(RuntimeError("killed")))
        dispatch_due(now=NOW)
    db.session.expire_all()
    assert db.session.get(OutboxMessage, mid).state == "sending"
    expire_leases(db, mid)
    report = dispatch_due(now=NOW)
    assert report["reclaimed"] == 1 and report["sent"] == 1
    assert events(mid) == ["attempt", "reclaimed", "attempt", "sent"]
    simulator = channels.twilio if channel == "sms" else channels.whatsapp
    assert simulator.count(f"m{mid}") == 1


def test_a_request_left_in_sending_by_a_worker_before_the_checkpoint_is_not_sent_again(db, channels):
    """A worker of an older version wrote no checkpoint: its ``sending`` row may have reached the provider (an
    upgrade while it sent). Its attempt carries no checkpoint mark, so the row is in doubt, never simply due."""
    customer = make_customer(phone_e164="+13055550179")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="whatsapp")
    mid = message.id
    left_by_a_dead_worker(db, message, "sending")
    db.session.add(MessageEvent(message_id=mid, kind="attempt", provider_payload={
        "channel": "whatsapp", "to": "+13055550179", "started_at": datetime.now(UTC).isoformat()}))
    db.session.commit()
    report = dispatch_due(now=NOW)
    assert not report.get("sent") and channels.whatsapp.count(f"m{mid}") == 0
    assert db.session.get(OutboxMessage, mid).state == "unknown"


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_request_is_checkpointed_before_it_leaves_and_a_lost_claim_sends_nothing(db, channels, monkeypatch,
                                                                                    channel):
    import app.outbox.send as send

    customer = make_customer(phone_e164="+13055550178")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel=channel)
    mid = message.id
    db.session.commit()
    simulator = channels.twilio if channel == "sms" else channels.whatsapp
    seen = []
    real = send._checkpoint

    def checkpoint(message_id, owner):
        seen.append((db.session.get(OutboxMessage, message_id).state, simulator.count(f"m{message_id}")))
        db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.id == message_id)
                           .values(claimed_by="someone-else"))  # our lease ran out just before the request
        db.session.commit()
        return real(message_id, owner)

    monkeypatch.setattr(send, "_checkpoint", checkpoint)
    assert dispatch_due(now=NOW).get("lost") == 1
    assert seen == [("sending", 0)]  # the checkpoint comes before anything is written to the provider
    assert simulator.count(f"m{mid}") == 0
    assert db.session.get(OutboxMessage, mid).state == "sending"


def test_a_connection_lost_after_the_dot_is_held_for_a_person(db, channels):
    message = due_message(channel="email")
    mid = message.id
    db.session.commit()
    channels.smtp.inject("drop_before_data")  # the server read the dot, then hung up without an answer
    assert dispatch_due(now=NOW).get("review") == 1
    assert db.session.get(OutboxMessage, mid).state == "review"
    assert dispatch_due(now=NOW)["claimed"] == 0


def test_an_sms_twilio_has_is_found_by_its_body_and_not_sent_again(db, channels, monkeypatch):
    customer = make_customer(phone_e164="+13055550171")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="sms")
    mid = message.id
    db.session.commit()
    with monkeypatch.context() as patch:
        die_after_the_provider_call(patch)
        dispatch_due(now=NOW)
    db.session.expire_all()
    assert db.session.get(OutboxMessage, mid).state == "delivering"  # past its checkpoint: Twilio may have it
    assert channels.twilio.count(f"m{mid}") == 1
    expire_leases(db, mid)
    report = dispatch_due(now=NOW)
    assert report["reclaimed"] == 1 and report.get("reconcile_found") == 1
    row = db.session.get(OutboxMessage, mid)
    assert row.state in ("sent", "delivered") and row.provider_message_id.startswith("SM")
    assert channels.twilio.count(f"m{mid}") == 1


def test_an_sms_twilio_never_got_is_sent_again_once(db, channels, monkeypatch):
    from app.channels.sms import TwilioSender

    customer = make_customer(phone_e164="+13055550172")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="sms")
    mid = message.id
    db.session.commit()
    with monkeypatch.context() as patch:  # the worker dies just before its request leaves
        patch.setattr(TwilioSender, "send", lambda self, outbound: (_ for _ in ()).throw(RuntimeError("killed")))
        dispatch_due(now=NOW)
    expire_leases(db, mid)
    report = dispatch_due(now=NOW)
    assert report.get("reconcile_resend") == 1 and report.get("sent") == 1
    assert channels.twilio.count(f"m{mid}") == 1


def test_a_whatsapp_status_webhook_settles_a_row_a_dead_worker_left(db, channels, monkeypatch):
    from app.channels.base import Channel, DeliveryStatus, StatusUpdate
    from app.outbox.delivery import apply_status

    customer = make_customer(phone_e164="+13055550173")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="whatsapp")
    mid = message.id
    db.session.commit()
    with monkeypatch.context() as patch:
        die_after_the_provider_call(patch)
        dispatch_due(now=NOW)
    [wamid] = [m["id"] for m in channels.whatsapp.messages.values() if m["reference"] == f"m{mid}"]
    apply_status(StatusUpdate(channel=Channel.WHATSAPP, provider_message_id=wamid, status=DeliveryStatus.DELIVERED,
                              reference=f"m{mid}"))
    expire_leases(db, mid)
    dispatch_due(now=NOW)
    row = db.session.get(OutboxMessage, mid)
    assert row.state == "delivered" and row.sent_at is not None
    assert channels.whatsapp.count(f"m{mid}") == 1


def test_a_whatsapp_without_any_status_goes_to_review_never_sent_again(db, channels, app):
    """Meta may hold a message whose status was lost or is late, and the Cloud API cannot be asked: once the
    webhook pipe has caught up past it, the row goes to review (it used to be sent again: a duplicate when Meta had
    it), and a status that comes later still settles it."""
    from app.channels.base import Channel, DeliveryStatus, StatusUpdate
    from app.outbox.delivery import apply_status

    customer = make_customer(phone_e164="+13055550174")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="whatsapp")
    mid = message.id
    left_by_a_dead_worker(db, message, "delivering")
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    db.session.add(MessageEvent(message_id=mid, kind="attempt",
                                provider_payload={"channel": "whatsapp", "started_at": long_ago.isoformat()}))
    db.session.commit()
    dispatch_due(now=NOW)
    assert db.session.get(OutboxMessage, mid).state == "unknown"  # no evidence either way: wait
    # a lagging webhook pipe: a status arrives now, but for a message sent before ours (ours may be right behind)
    older = due_message(channel="whatsapp", state="sent")
    older.sent_at = long_ago - timedelta(minutes=1)
    db.session.add(MessageEvent(message_id=older.id, kind="delivered", recorded_at=datetime.now(UTC)))
    db.session.commit()
    dispatch_due(now=NOW)
    assert db.session.get(OutboxMessage, mid).state == "unknown"
    # the pipe has caught up past ours: a message sent after the wait has its status, ours has none
    other = due_message(channel="whatsapp", state="sent")
    other.sent_at = datetime.now(UTC) - timedelta(minutes=5)
    db.session.add(MessageEvent(message_id=other.id, kind="delivered", recorded_at=datetime.now(UTC)))
    db.session.commit()
    report = dispatch_due(now=NOW)
    assert report.get("reconcile_review") == 1 and not report.get("reconcile_resend") and not report.get("sent")
    assert db.session.get(OutboxMessage, mid).state == "review"
    dispatch_due(now=NOW)
    assert channels.whatsapp.count(f"m{mid}") == 0  # never sent again by itself
    # Meta did have it: its status, late, settles the row
    apply_status(StatusUpdate(channel=Channel.WHATSAPP, provider_message_id="wamid.late",
                              status=DeliveryStatus.DELIVERED, reference=f"m{mid}"))
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(OutboxMessage, mid).state == "delivered"


def test_an_unknown_nobody_can_settle_goes_to_review_in_time(db, channels, app):
    app.config["UNKNOWN_REVIEW_HOURS"] = 1
    message = due_message(channel="whatsapp")
    mid = message.id
    left_by_a_dead_worker(db, message, "unknown")
    db.session.add(MessageEvent(message_id=mid, kind="attempt", provider_payload={
        "channel": "whatsapp", "started_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()}))
    db.session.commit()
    dispatch_due(now=NOW)
    assert db.session.get(OutboxMessage, mid).state == "review"


# -- asynchronous fallback, priorities, coordination -------------------------------------------------------------
def test_a_whatsapp_not_delivered_in_time_moves_the_step_to_its_next_channel(db, channels, app):
    app.config["WHATSAPP_DELIVERY_TIMEOUT_MINUTES"] = 30
    customer = make_customer(phone_e164="+13055550175")
    case = make_case(transaction=make_transaction(customer=customer))
    stuck = make_message(case=case, channel="whatsapp", fallbacks=["email"], state="sent",
                         sent_at=NOW - timedelta(minutes=45), scheduled_for=NOW - timedelta(hours=1))
    stuck_id = stuck.id
    fine = make_message(case=make_case(), channel="whatsapp", fallbacks=["email"], state="delivered",
                        sent_at=NOW - timedelta(minutes=45), scheduled_for=NOW - timedelta(hours=1))
    recent = make_message(case=make_case(), channel="whatsapp", fallbacks=["email"], state="sent",
                          sent_at=NOW - timedelta(minutes=5), scheduled_for=NOW - timedelta(hours=1))
    case_id, _ = case.id, (fine.id, recent.id)
    db.session.commit()
    report = dispatch_due(now=NOW)
    assert report["whatsapp_timeouts"] == 1 and report["sent"] == 1
    [fallback] = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.channel == "email")).all()
    assert fallback.case_id == case_id and fallback.state == "sent"
    fallback_id = fallback.id
    assert "not_delivered" in events(stuck_id)
    assert dispatch_due(now=NOW).get("whatsapp_timeouts") is None  # once
    assert channels.smtp.count(f"m{fallback_id}") == 1


def test_urgent_work_is_claimed_before_a_low_backlog(db, channels):
    for _ in range(30):
        due_message(priority="low", scheduled_for=NOW - timedelta(hours=2))
    urgent = due_message(priority="urgent", scheduled_for=NOW - timedelta(seconds=5))
    urgent_id = urgent.id
    db.session.commit()
    assert claim_due(NOW, 3)[0] == urgent_id


def test_several_open_cases_of_one_customer_get_one_reminder(db, channels):
    customer = make_customer(email="many@example.com")
    first = due_message(case=make_case(transaction=make_transaction(customer=customer, amount_minor=1500)),
                        channel="email")
    first_id = first.id
    second = due_message(case=make_case(transaction=make_transaction(customer=customer, amount_minor=2750)),
                         channel="sms", scheduled_for=NOW + timedelta(hours=3))
    second_id = second.id
    db.session.commit()
    report = dispatch_due(now=NOW)
    assert report["sent"] == 1
    [mail] = channels.smtp.received("many@example.com")
    assert "$27.50" in mail["text"] and "/pay/" in mail["text"]
    assert db.session.get(OutboxMessage, second_id).state == "merged"
    assert events(second_id) == ["merged"] and "consolidated" in events(first_id)
    assert channels.twilio.count(f"m{second_id}") == 0


def test_a_stop_arriving_while_a_message_is_claimed_still_stops_it(db, channels):
    from app.outbox.run import send_claimed

    customer = make_customer(phone_e164="+13055550176")
    message = due_message(case=make_case(transaction=make_transaction(customer=customer)), channel="sms")
    mid = message.id
    db.session.commit()
    [mid] = claim_due(NOW, 10, token="t1")
    opt_out(customer.id, ["sms", "whatsapp"], source="sms_stop")
    db.session.commit()
    assert send_claimed(mid, NOW, token="t1") == "skipped"
    assert channels.twilio.count(f"m{mid}") == 0
