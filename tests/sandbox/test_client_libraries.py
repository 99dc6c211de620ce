"""Issue 16, point 5: the simulators judged by the providers' client libraries. Twilio's official ``twilio`` library
sends through the Twilio simulator and reads its answers (message resources, lists, errors, a Messaging Service's
``from: null``) and validates its signed status callbacks and inbound webhooks; ``pywa``, a widely used WhatsApp
Cloud API library, sends through the WhatsApp simulator and parses every webhook it sends (statuses, inbound
messages, one with the number withheld, a template status update) without an error."""

from __future__ import annotations

import logging

import pytest
from pywa import WhatsApp, handlers
from pywa.types import Message as PywaMessage
from pywa.types import MessageStatus, MessageStatusType, TemplateStatusUpdate
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM, TwilioSimulator
from sandbox.whatsapp.server import (
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_TOKEN,
    DEFAULT_WABA_ID,
    WhatsAppSimulator,
)
from tests.app.channels.receiver import Receiver

SERVICE = "MG" + "5" * 32


@pytest.fixture(scope="module")
def hooks():
    with Receiver() as server:
        yield server


# -- Twilio, judged by the official library ----------------------------------------------------------------------
@pytest.fixture
def twilio(hooks):  # type: ignore[no-untyped-def]
    hooks.reset()
    with TwilioSimulator(inbound_url=f"{hooks.url}/twilio/in", delays=(0.01, 0.01)) as sim:
        client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
        client.api.base_url = sim.url  # the library's own requests, to the simulator
        yield sim, client


def test_the_official_twilio_library_reads_the_simulators_messages(twilio, hooks):
    sim, client = twilio
    sent = client.messages.create(to="+13055550142", from_=DEFAULT_FROM, body="Your payment failed",
                                  status_callback=f"{hooks.url}/twilio/status?ref=m1")
    assert sent.sid.startswith("SM") and sent.status == "queued" and sent.from_ == DEFAULT_FROM
    assert sent.account_sid == DEFAULT_ACCOUNT_SID and sent.num_segments == "1" and sent.date_created is not None
    assert sent.direction == "outbound-api" and sent.messaging_service_sid is None

    via_service = client.messages.create(to="+13055550143", messaging_service_sid=SERVICE, body="Again")
    assert via_service.status == "accepted" and via_service.from_ is None  # no sender picked yet, as on Twilio
    assert via_service.messaging_service_sid == SERVICE

    listed = client.messages.list(to="+13055550142", limit=20)
    assert [m.sid for m in listed] == [sent.sid]
    assert sim.wait_for_callbacks(5)
    assert client.messages(sent.sid).fetch().status == "delivered"
    assert client.messages(via_service.sid).fetch().from_ == DEFAULT_FROM  # picked by the service since

    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to="+15005550001", from_=DEFAULT_FROM, body="x")  # Twilio's magic invalid number
    assert refused.value.code == 21211 and refused.value.status == 400


def test_the_official_twilio_library_validates_the_simulators_webhooks(twilio, hooks):
    sim, client = twilio
    client.messages.create(to="+13055550142", from_=DEFAULT_FROM, body="hello",
                           status_callback=f"{hooks.url}/twilio/status?ref=m2")
    sim.send_inbound("+13055550142", "STOP")
    callbacks = hooks.wait_for("/twilio/status", 2)
    [inbound] = hooks.wait_for("/twilio/in", 1)
    validator = RequestValidator(DEFAULT_AUTH_TOKEN)
    for request in [*callbacks, inbound]:
        query = "&".join(f"{k}={v}" for k, v in request.query.items())
        url = f"{hooks.url}{request.path}" + (f"?{query}" if query else "")
        assert validator.validate(url, request.form(), request.headers["X-Twilio-Signature"]), request.path
        assert not validator.validate(url, {**request.form(), "Body": "forged"}, request.headers["X-Twilio-Signature"])
    assert sorted(c.form()["MessageStatus"] for c in callbacks) == ["delivered", "sent"]
    assert inbound.form()["OptOutType"] == "STOP" and inbound.form()["From"] == "+13055550142"


# -- WhatsApp, judged by pywa ----------------------------------------------------------------------------------
def test_pywa_sends_through_the_simulator_and_parses_every_webhook_it_sends(hooks, caplog):
    hooks.reset()
    number = "15551234567"
    with WhatsAppSimulator(webhook_url=f"{hooks.url}/wa", delays=(0.01, 0.02, 0.03), out_of_order=0) as sim:
        wa = WhatsApp(phone_id=DEFAULT_PHONE_NUMBER_ID, token=DEFAULT_TOKEN, server=None, app_secret=DEFAULT_APP_SECRET,
                      verify_token="not-used", waba_id=DEFAULT_WABA_ID, api_version="21.0")
        wa.api._session.base_url = f"{sim.url}/v21.0"  # pywa's own HTTP client, pointed at the simulator
        updates: list[object] = []
        wa.add_handlers(handlers.MessageHandler(lambda _, u: updates.append(u)),
                        handlers.MessageStatusHandler(lambda _, u: updates.append(u)),
                        handlers.TemplateStatusUpdateHandler(lambda _, u: updates.append(u)))
        sim.set_number(number, "read")
        sim.send_inbound(number, "hello", name="Ana")  # opens the 24-hour window
        sent = wa.send_message(to=number, text="Your payment failed: pay here")
        assert sent.id in sim.messages and sim.messages[sent.id]["text"] == "Your payment failed: pay here"
        assert sim.wait_for_webhooks()
        sim.send_inbound(number, "STOP", withhold_phone=True)  # a username: only the user id says who
        template = sim.add_template("card_declined", "es", body="Hola {{1}}", status="PENDING")
        sim.review_template(template["id"], "APPROVED")
        assert sim.wait_for_webhooks()
        deliveries = hooks.received("/wa")

        with caplog.at_level(logging.WARNING, logger="pywa"):
            for request in deliveries:
                assert wa.webhook_update_validator(request.body, request.headers["X-Hub-Signature-256"]) is None
                assert wa.webhook_update_handler(request.body) == ("ok", 200)
        assert not [r for r in caplog.records if r.name.startswith("pywa")], caplog.text  # nothing it could not read
    assert len(updates) == len(deliveries) == 6  # hello, sent, delivered, read, STOP, the template

    user_id = sim.user_id_for(number)
    messages = [u for u in updates if isinstance(u, PywaMessage)]
    assert [(m.text, m.from_user.wa_id, m.from_user.bsuid) for m in messages] == [
        ("hello", number, user_id), ("STOP", None, user_id)]
    assert messages[0].from_user.name == "Ana"
    statuses = [u for u in updates if isinstance(u, MessageStatus)]
    assert sorted(s.status for s in statuses) == sorted(  # in the order they happen to arrive
        [MessageStatusType.SENT, MessageStatusType.DELIVERED, MessageStatusType.READ])
    assert {(s.id, s.from_user.wa_id, s.from_user.bsuid) for s in statuses} == {(sent.id, number, user_id)}
    [reviewed] = [u for u in updates if isinstance(u, TemplateStatusUpdate)]
    assert (reviewed.template_name, reviewed.template_language.value, reviewed.new_status.value) == (
        "card_declined", "es", "APPROVED")
    assert reviewed.timestamp is not None
