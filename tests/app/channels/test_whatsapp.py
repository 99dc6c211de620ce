import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.channels.base import Channel, DeliveryStatus, Keyword, OutboundMessage, TemplateParam
from app.channels.whatsapp import (
    TemplateApiError,
    WhatsAppSender,
    currency_param,
    in_customer_service_window,
    parse_webhook,
    split_api_url,
    template_components,
    verify_subscription,
    verify_whatsapp_signature,
    whatsapp_signature,
)
from sandbox.whatsapp.server import WhatsAppSimulator

TOKEN = "wa-test-token"
SECRET = "wa-app-secret"
PHONE_ID = "106540352242922"
WABA = "102290129340398"
TEMPLATE_BODY = "Hi {{1}}, your payment of {{2}} did not go through. Update it here: {{3}}"


@pytest.fixture(scope="module")
def _whatsapp(_receiver_server):
    with WhatsAppSimulator(
        token=TOKEN,
        app_secret=SECRET,
        webhook_url=f"{_receiver_server.url}/hooks/whatsapp",
        phone_number_id=PHONE_ID,
        waba_id=WABA,
        delays=(0.02, 0.04, 0.06),
        seed=7,
        templates=[{"name": "payment_failed_reminder_v1", "language": "en_US", "body": TEMPLATE_BODY}],
    ) as sim:
        yield sim


@pytest.fixture
def whatsapp(_whatsapp, receiver):
    _whatsapp.wait_for_webhooks(2)
    _whatsapp.reset()
    _whatsapp.out_of_order = 0.0
    receiver.reset()
    yield _whatsapp


def sender_for(sim, **options):
    options.setdefault("backoff", 0.01)
    return WhatsAppSender(TOKEN, PHONE_ID, api_url=f"{sim.url}/v21.0", waba_id=WABA, **options)


def reminder(to="+15551234567", ref="msg-1", **overrides):
    fields = dict(
        template_name="payment_failed_reminder_v1",
        template_language="en_US",
        template_params=(
            TemplateParam("Ana"),
            currency_param(Decimal("49.00"), "USD", "en_US"),
            TemplateParam("https://pay.example.com/p/tok"),
        ),
    )
    fields.update(overrides)
    return OutboundMessage(Channel.WHATSAPP, to, ref, **fields)


def webhook_statuses(receiver, count):
    posts = receiver.wait_for("/hooks/whatsapp", count)
    statuses = []
    for post in posts:
        assert verify_whatsapp_signature(SECRET, post.body, post.headers["X-Hub-Signature-256"])
        statuses.extend(parse_webhook(post.body).statuses)
    return statuses


# -- signatures and verification -----------------------------------------------------------------------------
def test_signature_matches_the_reference_vector():
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = "sha256=dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756"
    assert whatsapp_signature("test_app_secret", body) == expected
    assert verify_whatsapp_signature("test_app_secret", body, expected)
    assert verify_whatsapp_signature("test_app_secret", body, expected.upper().replace("SHA256", "sha256"))
    assert not verify_whatsapp_signature("test_app_secret", body + b" ", expected)
    assert not verify_whatsapp_signature("other", body, expected)
    assert not verify_whatsapp_signature("test_app_secret", body, None)
    assert not verify_whatsapp_signature("test_app_secret", body, "")


def test_subscription_handshake():
    params = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"}
    assert verify_subscription(params, "vt") == "1158201444"
    assert verify_subscription({**params, "hub.verify_token": "no"}, "vt") is None
    assert verify_subscription({**params, "hub.mode": "unsubscribe"}, "vt") is None
    assert verify_subscription({}, "vt") is None
    assert verify_subscription(params, "") is None


# -- payloads ------------------------------------------------------------------------------------------------
def test_currency_parameter_has_amount_1000_and_a_babel_fallback():
    param = currency_param(Decimal("1234.5"), "eur", "de_DE")
    assert param.amount_1000 == 1234500 and param.currency == "EUR"
    assert param.text == "1.234,50\xa0€"
    assert currency_param("49", "USD", "en_US").text == "$49.00"


def test_components_group_header_body_and_buttons():
    components = template_components(
        [
            TemplateParam("inv_8f3a2c", component="button", button_index=0),
            TemplateParam("Ana"),
            TemplateParam("March 14, 2025", type="date_time"),
            TemplateParam("Acme", component="header", name="brand"),
        ]
    )
    assert components == [
        {"type": "header", "parameters": [{"type": "text", "text": "Acme", "parameter_name": "brand"}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {"type": "date_time", "date_time": {"fallback_value": "March 14, 2025"}},
            ],
        },
        {
            "type": "button",
            "parameters": [{"type": "text", "text": "inv_8f3a2c"}],
            "sub_type": "url",
            "index": "0",
        },
    ]


def test_payload_is_a_utility_template_with_our_reference():
    payload = sender_for(WhatsAppSimulator()).payload(reminder())
    assert payload["messaging_product"] == "whatsapp" and payload["to"] == "15551234567"
    assert payload["type"] == "template" and payload["biz_opaque_callback_data"] == "msg-1"
    assert payload["template"]["language"] == {"code": "en_US", "policy": "deterministic"}
    currency = payload["template"]["components"][0]["parameters"][1]
    assert currency == {
        "type": "currency",
        "currency": {"fallback_value": "$49.00", "code": "USD", "amount_1000": 49000},
    }


def test_api_url_may_carry_the_version():
    assert split_api_url("https://graph.facebook.com/v19.0/") == ("https://graph.facebook.com", "v19.0")
    assert split_api_url("https://graph.facebook.com") == ("https://graph.facebook.com", "v21.0")
    env = {"WHATSAPP_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "1", "WHATSAPP_API_URL": "http://h:1/v20.0"}
    assert WhatsAppSender.from_env(env).messages_url == "http://h:1/v20.0/1/messages"


# -- sending -------------------------------------------------------------------------------------------------
def test_template_send_is_accepted_and_statuses_arrive_signed(whatsapp, receiver):
    result = sender_for(whatsapp).send(reminder(ref="msg-7"))
    assert result.accepted and result.provider_message_id.startswith("wamid.")
    assert result.raw["contacts"] == [{"input": "15551234567", "wa_id": "15551234567"}]
    statuses = webhook_statuses(receiver, 2)
    assert {s.status for s in statuses} == {DeliveryStatus.SENT, DeliveryStatus.DELIVERED}
    assert {s.reference for s in statuses} == {"msg-7"}
    assert {s.provider_message_id for s in statuses} == {result.provider_message_id}
    assert all(s.timestamp is not None and s.recipient == "15551234567" for s in statuses)
    assert whatsapp.count("msg-7") == 1
    assert whatsapp.messages[result.provider_message_id]["text"].startswith("Hi Ana, your payment of $49.00")


def test_statuses_out_of_order_still_settle_on_the_furthest(whatsapp, receiver):
    whatsapp.out_of_order = 1.0
    whatsapp.set_number("15551234568", "read")
    sender = sender_for(whatsapp)
    for n in range(4):
        assert sender.send(reminder(to="+15551234568", ref=f"ooo-{n}")).accepted
    statuses = webhook_statuses(receiver, 12)
    assert len(statuses) == 12
    arrival = [s.status for s in statuses]
    assert arrival != sorted(arrival, key=lambda s: s.rank)  # something arrived out of order
    by_message: dict[str, DeliveryStatus | None] = {}
    for status in statuses:
        current = by_message.get(status.provider_message_id)
        if status.status.supersedes(current):
            by_message[status.provider_message_id] = status.status
    assert set(by_message.values()) == {DeliveryStatus.READ}


def test_not_on_whatsapp_fails_by_webhook_with_131026(whatsapp, receiver):
    whatsapp.set_number("15550000000", "not_on_whatsapp")
    result = sender_for(whatsapp).send(reminder(to="+15550000000"))
    assert result.accepted  # as on Meta: accepted, then failed
    [failed] = webhook_statuses(receiver, 1)
    assert failed.status is DeliveryStatus.FAILED and failed.error_code == "131026"
    assert failed.error_text == "Message undeliverable"


def test_synchronous_131026_is_permanent(whatsapp):
    whatsapp.set_number("15550000001", "reject:131026")
    result = sender_for(whatsapp).send(reminder(to="+15550000001"))
    assert result.permanent and not result.retryable and result.error_code == "131026"


def test_pair_rate_limit_is_retryable_later(whatsapp):
    whatsapp.set_number("15550000002", "reject:131056")
    result = sender_for(whatsapp, max_attempts=2).send(reminder(to="+15550000002"))
    assert result.retryable and not result.permanent and result.error_code == "131056"
    assert result.attempts == 1  # pair limits last minutes: not retried on the spot


def test_unknown_template_and_wrong_parameter_count_are_permanent(whatsapp):
    sender = sender_for(whatsapp)
    missing = sender.send(reminder(template_name="no_such_template"))
    assert missing.permanent and missing.error_code == "132001" and "does not exist" in missing.error_text
    short = sender.send(reminder(template_params=(TemplateParam("Ana"),)))
    assert short.permanent and short.error_code == "132000"


def test_bad_token_is_our_fault(whatsapp):
    result = WhatsAppSender("nope", PHONE_ID, api_url=whatsapp.url).send(reminder())
    assert result.error_code == "190" and result.outcome == "error"


def test_throughput_errors_are_retried_without_duplicates(whatsapp):
    whatsapp.inject("http_429", count=1, path="/messages")
    result = sender_for(whatsapp).send(reminder(ref="r-429"))
    assert result.accepted and result.attempts == 2 and whatsapp.count("r-429") == 1


def test_a_bare_5xx_is_unknown_not_resent(whatsapp):
    whatsapp.inject("http_502", count=1, path="/messages")
    result = sender_for(whatsapp).send(reminder(ref="r-502"))
    assert result.unknown and result.outcome == "unknown" and result.attempts == 1


def test_free_text_only_inside_the_customer_service_window(whatsapp, receiver):
    sender = sender_for(whatsapp)
    text = OutboundMessage(
        Channel.WHATSAPP, "+15551234567", "t-1", text="Your link: https://pay.example.com/p/x"
    )
    outside = sender.send(text)
    assert outside.permanent and outside.error_code == "131047" and outside.attempts == 0
    assert whatsapp.received("/messages") == []

    whatsapp.send_inbound("15551234567", "Hi, I want to pay")
    [post] = receiver.wait_for("/hooks/whatsapp", 1)
    [inbound] = parse_webhook(post.body).messages
    assert (
        inbound.sender == "+15551234567" and inbound.body == "Hi, I want to pay" and inbound.keyword is None
    )
    receiver.reset()
    inside = sender.send(
        OutboundMessage(
            Channel.WHATSAPP, "+15551234567", "t-2", text="Here it is", last_inbound_at=inbound.timestamp
        )
    )
    assert inside.accepted
    assert {s.status for s in webhook_statuses(receiver, 2)} == {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
    }


def test_window_is_24_hours_from_the_last_inbound_message():
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert in_customer_service_window(now - timedelta(hours=23, minutes=59), now)
    assert not in_customer_service_window(now - timedelta(hours=24), now)
    assert not in_customer_service_window(None, now)


def test_inbound_stop_is_a_keyword(whatsapp, receiver):
    whatsapp.send_inbound("+15551234567", "STOP")
    [post] = receiver.wait_for("/hooks/whatsapp", 1)
    assert parse_webhook(post.body).messages[0].keyword is Keyword.STOP


# -- templates -----------------------------------------------------------------------------------------------
def test_template_submission_review_and_status(whatsapp, receiver):
    sender = sender_for(whatsapp)
    components = [
        {
            "type": "BODY",
            "text": "Hi {{1}}, your {{2}} payment failed.",
            "example": {"body_text": [["Ana", "$49.00"]]},
        }
    ]
    created = sender.submit_template("payment_failed_v2", "en_US", components)
    assert created["status"] == "PENDING" and created["category"] == "UTILITY"
    assert sender.fetch_template(created["id"])["status"] == "PENDING"
    not_yet = sender.send(reminder(template_name="payment_failed_v2", template_params=()))
    assert not_yet.error_code == "132001"

    whatsapp.review_template(created["id"], "APPROVED")
    [post] = receiver.wait_for("/hooks/whatsapp", 1)
    assert verify_whatsapp_signature(SECRET, post.body, post.headers["X-Hub-Signature-256"])
    [update] = parse_webhook(post.body).template_updates
    assert (
        update.event == "APPROVED"
        and update.name == "payment_failed_v2"
        and update.template_id == created["id"]
    )
    assert [t["status"] for t in sender.list_templates("payment_failed_v2")] == ["APPROVED"]

    with pytest.raises(TemplateApiError) as duplicate:
        sender.submit_template("payment_failed_v2", "en_US", components)
    assert duplicate.value.code == 100
    with pytest.raises(TemplateApiError):
        sender.submit_template("no_example", "en_US", [{"type": "BODY", "text": "Hi {{1}}"}])


def test_parse_webhook_reads_the_reference_failed_example():
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": "106540352242922",
                            },
                            "statuses": [
                                {
                                    "id": "wamid.X",
                                    "status": "failed",
                                    "timestamp": "1741969800",
                                    "recipient_id": "15551234567",
                                    "biz_opaque_callback_data": "reminder:7781",
                                    "errors": [{"code": 131026, "title": "Message undeliverable"}],
                                },
                                {"id": "wamid.Y", "status": "deleted", "timestamp": "1"},
                            ],
                        },
                    }
                ],
            }
        ],
    }
    parsed = parse_webhook(json.dumps(body).encode())
    [status] = parsed.statuses
    assert status.reference == "reminder:7781" and status.error_code == "131026"
    assert status.timestamp == datetime(2025, 3, 14, 16, 30, tzinfo=UTC)
