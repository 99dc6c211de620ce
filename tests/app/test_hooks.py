"""Inbound provider webhooks: signatures first, then opt-outs and statuses take effect at once."""

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from app.channels.sms import twilio_signature
from app.channels.whatsapp import whatsapp_signature
from app.models import ConsentEvent, MessageEvent, OptOut, OutboxMessage
from tests.builders import make_case, make_customer, make_message, make_transaction

TOKEN = "twilio-test-token"
SECRET = "wa-test-secret"


def signed_twilio(client, path, form):
    url = "http://localhost" + path
    return client.post(path, data=form, headers={"X-Twilio-Signature": twilio_signature(TOKEN, url, form)})


def setup(app):
    app.config.update(TWILIO_AUTH_TOKEN=TOKEN, WHATSAPP_APP_SECRET=SECRET, WHATSAPP_VERIFY_TOKEN="verify-me")


def test_sms_stop_ends_sms_and_whatsapp_at_once_and_start_brings_them_back(app, client, db):
    setup(app)
    customer = make_customer(phone_e164="+13055550142")
    case = make_case(transaction=make_transaction(customer=customer))
    waiting = make_message(
        case=case, channel="sms", fallbacks=["whatsapp", "email"], scheduled_for=datetime(2030, 1, 1, tzinfo=UTC)
    )
    db.session.commit()
    form = {
        "From": "+13055550142",
        "To": "+15550001111",
        "Body": "stop",
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": "AC" + "0" * 32,
    }
    response = signed_twilio(client, "/hooks/twilio/inbound", form)
    assert response.status_code == 200 and response.mimetype == "text/xml"
    channels = set(db.session.scalars(sa.select(OptOut.channel).where(OptOut.customer_id == customer.id)))
    assert channels == {"sms", "whatsapp"}
    moved = db.session.get(OutboxMessage, waiting.id)
    assert moved.channel == "email" and moved.fallbacks == []
    form["Body"] = "START"
    assert signed_twilio(client, "/hooks/twilio/inbound", form).status_code == 200
    assert db.session.scalars(sa.select(OptOut).where(OptOut.customer_id == customer.id)).all() == []
    history = [e.action for e in db.session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id))]
    assert history == ["opt_out", "opt_out", "opt_in", "opt_in"]


def test_a_forged_twilio_callback_changes_nothing(app, client, db):
    setup(app)
    message = make_message(channel="sms", state="sent", provider_message_id="SM" + "2" * 32)
    db.session.commit()
    form = {"MessageSid": message.provider_message_id, "MessageStatus": "delivered"}
    response = client.post("/hooks/twilio/status", data=form, headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
    assert response.status_code == 403
    assert db.session.scalars(sa.select(MessageEvent)).all() == []


def test_twilio_status_callbacks_are_events_and_the_furthest_status_wins(app, client, db):
    setup(app)
    message = make_message(channel="sms", state="sent", provider_message_id="SM" + "3" * 32)
    db.session.commit()
    for status in ("delivered", "sent"):  # out of order
        form = {
            "MessageSid": message.provider_message_id,
            "MessageStatus": status,
            "AccountSid": "AC" + "0" * 32,
            "To": "+13055550142",
        }
        assert signed_twilio(client, "/hooks/twilio/status", form).status_code == 204
    db.session.rollback()  # a worker applied them, in a session of its own: read afresh
    row = db.session.get(OutboxMessage, message.id)
    assert row.state == "delivered"
    kinds = [e.kind for e in db.session.scalars(sa.select(MessageEvent).where(MessageEvent.message_id == row.id))]
    assert kinds == ["delivered", "sent"]


def test_whatsapp_webhook_needs_its_signature(app, client, db):
    setup(app)
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    assert (
        client.post(
            "/hooks/whatsapp", data=body, content_type="application/json", headers={"X-Hub-Signature-256": "sha256=00"}
        ).status_code
        == 401
    )
    ok = client.post(
        "/hooks/whatsapp",
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature-256": whatsapp_signature(SECRET, body)},
    )
    assert ok.status_code == 200
    challenge = client.get("/hooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=77")
    assert challenge.status_code == 200 and challenge.get_data(as_text=True) == "77"
    wrong = client.get("/hooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=77")
    assert wrong.status_code == 403


def test_one_click_unsubscribe_stops_email(app, client, db):
    from app.payments.links import unsubscribe_token

    message = make_message(channel="email")
    db.session.commit()
    token = unsubscribe_token(app.config["SECRET_KEY"], message.id)
    assert client.post(f"/t/u/{token}", data="List-Unsubscribe=One-Click").status_code == 200
    assert db.session.scalar(sa.select(OptOut.channel).where(OptOut.customer_id == message.customer_id)) == "email"
    assert client.post("/t/u/forged-token").status_code == 404
