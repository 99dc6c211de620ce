"""The webhook inbox (app.inbox), over real HTTP: a webhook is stored before its answer and applied by a worker
(at once on the embedded default), once however often it arrives; a wake-up lost with Redis is swept; one that
cannot be applied is tried a few times and set aside with its error; a customer's STOP holds before the answer."""

import json
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from rq import SimpleWorker

from app import inbox
from app.channels.sms import twilio_signature
from app.channels.whatsapp import whatsapp_signature
from app.extensions import db
from app.models import InboundEvent, MessageEvent, OptOut, OutboxMessage
from app.models.types import utcnow
from app.queue import RQQueue, make_queue
from tests.builders import make_customer, make_message
from tests.live_server import LiveServer
from workers import jobs
from workers.context import set_worker_app

TOKEN = "twilio-inbox-token"
SECRET = "wa-inbox-secret"


@pytest.fixture
def queue(app, queue_backend, redis_url):
    app.config.update(REDIS_URL=redis_url, TWILIO_AUTH_TOKEN=TOKEN, WHATSAPP_APP_SECRET=SECRET)
    q = make_queue(app)
    app.extensions["recoup.queue"] = q
    if isinstance(q, RQQueue):
        q.connection.flushdb()
    set_worker_app(app)
    yield q
    set_worker_app(None)


def work(queue) -> None:
    """What a worker does with the jobs waiting (nothing waits in-process: they ran at once)."""
    if isinstance(queue, RQQueue):
        SimpleWorker(queue.ordered_queues(), connection=queue.connection).work(burst=True)
    db.session.expire_all()


def post_status(live, sid: str, status: str) -> requests.Response:
    url = f"{live.url}/hooks/twilio/status"
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32, "To": "+13055550142"}
    return requests.post(url, data=form, headers={"X-Twilio-Signature": twilio_signature(TOKEN, url, form)},
                         timeout=10)


def events_of(message_id: int) -> list[str]:
    db.session.rollback()  # a fresh read (MariaDB's repeatable read would show this session's older snapshot)
    return list(db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message_id)
                                   .order_by(MessageEvent.id)))


def stored() -> list[InboundEvent]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(InboundEvent).where(InboundEvent.provider.in_(inbox.PROVIDERS))
                                   .order_by(InboundEvent.id)))


def test_a_status_is_stored_before_its_answer_and_applied_once_however_often_it_comes(app, db, queue):
    message = make_message(channel="sms", state="sent", provider_message_id="SM" + "4" * 32)
    db.session.commit()
    message_id = message.id
    with LiveServer(app) as live:
        assert post_status(live, message.provider_message_id, "delivered").status_code == 204
        [row] = stored()
        if isinstance(queue, RQQueue):  # answered before a worker applied it
            assert row.processed_at is None and events_of(message_id) == []
        assert post_status(live, message.provider_message_id, "delivered").status_code == 204  # Twilio again
        work(queue)
    [row] = stored()
    assert row.processed_at is not None and row.error is None and row.event_type == "delivered"
    assert events_of(message_id) == ["delivered"]
    assert db.session.get(OutboxMessage, message_id).state == "delivered"


def test_a_wake_up_lost_with_redis_is_swept_by_the_dispatch_job(app, db, queue):
    if not isinstance(queue, RQQueue):
        pytest.skip("in-process jobs run at once: there is no wake-up to lose")
    message = make_message(channel="sms", state="sent", provider_message_id="SM" + "5" * 32)
    db.session.commit()
    message_id = message.id
    with LiveServer(app) as live:
        assert post_status(live, message.provider_message_id, "delivered").status_code == 204
    queue.connection.flushdb()  # Redis restarted empty: the woken job is gone
    jobs.dispatch_due()
    assert events_of(message_id) == [], "swept before it was late: a worker may be applying it right now"
    db.session.execute(sa.update(InboundEvent).values(received_at=utcnow() - inbox.SWEEP_AFTER - timedelta(1)))
    db.session.commit()
    report = jobs.dispatch_due()
    assert report["webhooks_swept"] == {"applied": 1, "failed": 0}
    assert events_of(message_id) == ["delivered"]


def test_a_webhook_that_cannot_be_applied_is_tried_again_then_set_aside_with_its_error(app, db, queue):
    # stored verified, yet it breaks when applied (here: a form without its status, which the view would refuse)
    row_id, duplicate = inbox.accept("twilio", "SMbroken:delivered", "delivered",
                                     {"form": {"MessageSid": "SMbroken"}, "url": "http://x/hooks/twilio/status"})
    assert not duplicate
    work(queue)
    for _ in range(inbox.MAX_ATTEMPTS):
        [row] = stored()
        if row.processed_at is not None:
            break
        inbox.apply_rows([row_id])
    [row] = stored()
    assert row.attempts == inbox.MAX_ATTEMPTS and row.processed_at is not None
    assert "MessageStatus" in row.error
    assert inbox.waiting() == []  # no longer tried: an operator reads it (attempts and error) instead
    from app.ops.metrics import webhook_inbox

    with db.engine.connect() as conn:
        gauge = {tuple(s.labels.values()): s.value for s in webhook_inbox(conn, utcnow()).samples}
    assert gauge[("twilio", "set_aside")] == 1 and gauge[("twilio", "waiting")] == 0  # what the alert watches


def test_a_whatsapp_stop_holds_before_the_answer_even_with_a_worker_queue(app, db, queue):
    customer = make_customer(phone_e164="+13055550177")
    db.session.commit()
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550001111",
                                                          "phone_number_id": "PNID"},
            "contacts": [{"wa_id": "13055550177", "user_id": "US.13491208655302741918",
                          "profile": {"name": "Ana"}}],
            "messages": [{"from": "13055550177", "id": "wamid.STOP1", "timestamp": "1796600000", "type": "text",
                          "text": {"body": "STOP"}}]}}]}]}).encode()
    with LiveServer(app) as live:
        answer = requests.post(f"{live.url}/hooks/whatsapp", data=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": whatsapp_signature(SECRET, body)})
        assert answer.status_code == 200
        db.session.expire_all()
        # no worker has run: the opt-out is there already
        assert db.session.scalar(sa.select(OptOut.channel).where(OptOut.customer_id == customer.id)) is not None
        [row] = [r for r in stored() if r.event_type == "messages"]
        assert row.processed_at is not None
        again = requests.post(f"{live.url}/hooks/whatsapp", data=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": whatsapp_signature(SECRET, body)})
        assert again.status_code == 200
    assert len([r for r in stored() if r.event_type == "messages"]) == 1


def test_nmi_failures_stored_together_are_ingested_in_one_batch_each_once(app, db, queue):
    from app.accounts.gateway_accounts import save_account
    from app.models import RecoveryCase, Transaction
    from sandbox.nmi.server import NmiSimulator

    with NmiSimulator(seed=8, webhook_signing_key="whsec-inbox") as sim, LiveServer(app) as live:
        save_account("nmi-inbox", "nmi", api_url=f"{sim.url}/api",
                     credentials={"security_key": sim.security_key, "webhook_signing_key": "whsec-inbox"})
        db.session.commit()
        deliveries = [sim.send_webhook("transaction.sale.failure", sim.add_transaction(condition="failed",
                                                                                        decline_code="202"),
                                       url=f"{sim.url}/nowhere") for _ in range(5)]
        for d in [*deliveries, deliveries[0]]:  # the first one delivered twice
            headers = {k: v for k, v in d.headers.items() if k.lower() != "content-length"}
            assert requests.post(f"{live.url}/hooks/nmi", data=d.body, headers=headers, timeout=10).ok
        work(queue)
    assert len(stored()) == 5 and all(r.processed_at is not None and r.error is None for r in stored())
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 5
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 5


def test_a_webhook_stored_while_the_woken_job_settles_is_applied_by_it(app, db, backend, monkeypatch):
    """The job looks once more after finding nothing, in a new transaction: on MariaDB the first look's snapshot
    would hide a row stored during the pause, and that row would wait for the sweep."""
    import threading
    import time

    if backend != "mysql":
        pytest.skip("a repeatable-read snapshot is MariaDB's")
    message = make_message(channel="sms", state="sent", provider_message_id="SM" + "6" * 32)
    db.session.commit()
    message_id, sid = message.id, message.provider_message_id
    monkeypatch.setattr(inbox, "SETTLE_SECONDS", 1.0)
    done: dict[str, int] = {}

    def job() -> None:
        with app.app_context():
            done.update(inbox.apply_waiting(settle=True))
            db.session.remove()

    worker = threading.Thread(target=job)
    worker.start()
    time.sleep(0.4)  # the job has looked, found nothing, and is pausing
    inbox._store_alone({"provider": "twilio", "event_id": f"{sid}:delivered", "event_type": "delivered",
                        "payload": {"form": {"MessageSid": sid, "MessageStatus": "delivered"}, "url": None},
                        "account_id": None, "received_at": utcnow(), "attempts": 0, "processed_at": None,
                        "error": None})
    worker.join(10)
    assert done == {"applied": 1, "failed": 0}
    assert events_of(message_id) == ["delivered"]
