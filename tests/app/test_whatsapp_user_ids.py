"""Issue 16, point 5: WhatsApp users by their business-scoped user id (BSUID). Meta now puts the user id in every
webhook (``contacts[].user_id``, ``messages[].from_user_id``, ``statuses[].recipient_user_id``) and may withhold the
phone number of a user with a username. A STOP carrying only the user id must still opt that customer out at once.
Driven through the WhatsApp simulator's signed webhooks over real sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from app.extensions import db
from app.models import ConsentEvent, OptOut, OutboxMessage
from app.outbox.whatsapp_users import phone_of
from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN, WhatsAppSimulator
from tests.builders import make_case, make_customer, make_message, make_transaction
from tests.live_server import LiveServer

SECRET = "wa-user-id-secret-31"
LATER = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def whatsapp(app):  # type: ignore[no-untyped-def]
    app.config.update(WHATSAPP_APP_SECRET=SECRET)
    with LiveServer(app) as live, WhatsAppSimulator(app_secret=SECRET, webhook_url=f"{live.url}/hooks/whatsapp",
                                                  delays=(0.01, 0.02, 0.03), out_of_order=0) as sim:
        yield sim


def _customer_with_waiting_whatsapp(phone: str):  # type: ignore[no-untyped-def]
    customer = make_customer(phone_e164=phone)
    case = make_case(transaction=make_transaction(customer=customer))
    waiting = make_message(case=case, channel="whatsapp", address=phone, fallbacks=["email"], scheduled_for=LATER)
    db.session.flush()
    ids = customer.id, waiting.id
    db.session.commit()  # and nothing read after it: no snapshot held open while the webhooks write (MariaDB)
    return ids


def _opted_out(customer_id: int) -> set[str]:
    db.session.expire_all()
    channels = set(db.session.scalars(sa.select(OptOut.channel).where(OptOut.customer_id == customer_id)))
    db.session.commit()  # no open transaction while the webhooks write (SQLite)
    return channels


def test_a_stop_with_the_number_withheld_opts_out_the_customer_the_user_id_belongs_to(app, whatsapp):
    customer_id, waiting_id = _customer_with_waiting_whatsapp("+15551230001")
    user_id = whatsapp.user_id_for("15551230001")
    # the customer writes while Meta still shows the number: the webhook carries both, Recoup ties them
    hello = whatsapp.send_inbound("15551230001", "hello")
    assert hello["status"] == 200
    [webhook] = [c for c in whatsapp.callbacks if c["kind"] == "inbound"]
    value = webhook["payload"]["entry"][0]["changes"][0]["value"]
    assert value["contacts"][0]["user_id"] == user_id and value["messages"][0]["from_user_id"] == user_id
    assert phone_of(user_id) == "+15551230001"
    db.session.commit()

    # then a username: the number is withheld, only the user id says who replied STOP
    stop = whatsapp.send_inbound("15551230001", "STOP", withhold_phone=True)
    assert stop["status"] == 200
    sent = whatsapp.callbacks[-1]["payload"]["entry"][0]["changes"][0]["value"]
    assert "from" not in sent["messages"][0] and "wa_id" not in sent["contacts"][0]
    assert _opted_out(customer_id) == {"sms", "whatsapp"}
    moved = db.session.get(OutboxMessage, waiting_id)
    assert moved.channel == "email" and moved.fallbacks == []  # at once: the waiting WhatsApp went to email
    details = set(db.session.scalars(sa.select(ConsentEvent.detail).where(ConsentEvent.customer_id == customer_id)))
    assert details == {f"STOP (user id {user_id})"}


def test_a_stop_from_a_user_id_not_known_yet_takes_effect_when_its_number_is_learned(app, whatsapp):
    customer_id, _ = _customer_with_waiting_whatsapp("+15551230002")
    user_id = whatsapp.user_id_for("15551230002")
    stop = whatsapp.send_inbound("15551230002", "STOP", withhold_phone=True)
    assert stop["status"] == 200
    assert _opted_out(customer_id) == set()  # nobody to opt out yet: the STOP is kept under the user id
    assert phone_of(user_id) is None
    db.session.commit()

    # a message to that number (already on its way): its status webhooks carry the number and the user id
    answer = requests.post(f"{whatsapp.url}/v21.0/{DEFAULT_PHONE_NUMBER_ID}/messages",
                           headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
                           json={"messaging_product": "whatsapp", "to": "15551230002", "type": "text",
                                 "text": {"body": "reminder"}}, timeout=5)
    assert answer.status_code == 200
    assert whatsapp.wait_for_webhooks()
    statuses = [c["payload"]["entry"][0]["changes"][0]["value"] for c in whatsapp.callbacks if c["kind"] == "status"]
    assert statuses and all(v["contacts"] == [{"wa_id": "15551230002", "user_id": user_id}] for v in statuses)
    assert all(v["statuses"][0]["recipient_user_id"] == user_id for v in statuses)
    assert _opted_out(customer_id) == {"sms", "whatsapp"}
    assert phone_of(user_id) == "+15551230002"
    db.session.commit()


def test_a_user_id_only_start_after_a_kept_stop_cancels_it(app, whatsapp):
    customer_id, _ = _customer_with_waiting_whatsapp("+15551230003")
    assert whatsapp.send_inbound("15551230003", "STOP", withhold_phone=True)["status"] == 200
    assert whatsapp.send_inbound("15551230003", "START", withhold_phone=True)["status"] == 200
    assert whatsapp.send_inbound("15551230003", "hello")["status"] == 200  # the number is learned
    assert _opted_out(customer_id) == set()
