from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from app.channels.base import Channel, ConfigurationError, DeliveryStatus, Keyword, OutboundMessage
from app.channels.sms import (
    TwilioSender,
    parse_inbound,
    parse_status_callback,
    twilio_signature,
    twiml_response,
    verify_twilio_signature,
    with_reference,
)
from sandbox.twilio.server import TwilioSimulator

SID = "AC" + "ab" * 16
TOKEN = "test-auth-token"
FROM = "+15550001111"


@pytest.fixture(scope="module")
def _twilio(_receiver_server):
    with TwilioSimulator(
        account_sid=SID,
        auth_token=TOKEN,
        from_number=FROM,
        inbound_url=f"{_receiver_server.url}/hooks/twilio/inbound",
        delays=(0.02, 0.03),
    ) as sim:
        yield sim


@pytest.fixture
def twilio(_twilio, receiver):
    _twilio.wait_for_callbacks(2)
    _twilio.reset()
    receiver.reset()
    yield _twilio


def sender_for(sim, **options):
    options.setdefault("backoff", 0.01)
    options.setdefault("max_backoff", 0.05)
    return TwilioSender(SID, TOKEN, FROM, api_url=sim.url, **options)


def sms(
    to="+13055550142", ref="msg-1", callback=None, text="Acme: your payment failed. Reply STOP to opt out."
):
    return OutboundMessage(Channel.SMS, to, ref, text=text, status_callback=callback)


# -- signatures ----------------------------------------------------------------------------------------------
TWILIO_VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_signature_matches_twilios_published_vector():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, TWILIO_VECTOR_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_verify_accepts_good_and_rejects_bad_or_missing_signatures():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    good = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_twilio_signature("12345", url, TWILIO_VECTOR_PARAMS, good)
    assert not verify_twilio_signature("12345", url, {**TWILIO_VECTOR_PARAMS, "Digits": "9"}, good)
    assert not verify_twilio_signature("wrong", url, TWILIO_VECTOR_PARAMS, good)
    assert not verify_twilio_signature("12345", url, TWILIO_VECTOR_PARAMS, None)
    assert not verify_twilio_signature("12345", url, TWILIO_VECTOR_PARAMS, "")


def test_verify_tolerates_the_default_port_either_way():
    params = {"A": "1"}
    signed_without = twilio_signature("t", "https://example.com/hook", params)
    assert verify_twilio_signature("t", "https://example.com:443/hook", params, signed_without)
    signed_with = twilio_signature("t", "https://example.com:443/hook", params)
    assert verify_twilio_signature("t", "https://example.com/hook", params, signed_with)


def test_json_webhooks_sign_the_url_and_hash_the_body():
    import hashlib

    body = b'{"a":1}'
    url = f"https://example.com/hook?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = twilio_signature("t", url)
    assert verify_twilio_signature("t", url, {}, signature, body=body)
    assert not verify_twilio_signature("t", url, {}, signature, body=b'{"a":2}')


# -- sending -------------------------------------------------------------------------------------------------
def test_send_is_accepted_and_signed_status_callbacks_arrive(twilio, receiver):
    callback = f"{receiver.url}/hooks/twilio/status"
    result = sender_for(twilio).send(sms(callback=callback, ref="msg-42"))
    assert result.accepted and result.outcome == "accepted"
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.status == "queued" and result.raw["num_segments"] == "1"

    posts = receiver.wait_for("/hooks/twilio/status", 2)
    assert len(posts) == 2
    updates = []
    for post in posts:
        full_url = f"{receiver.url}{post.path}?{urlencode(post.query)}"
        form = post.form()
        assert verify_twilio_signature(TOKEN, full_url, form, post.headers["X-Twilio-Signature"])
        assert not verify_twilio_signature("other-token", full_url, form, post.headers["X-Twilio-Signature"])
        updates.append(parse_status_callback(form, full_url))
    assert [u.status for u in updates] == [DeliveryStatus.SENT, DeliveryStatus.DELIVERED]
    assert {u.provider_message_id for u in updates} == {result.provider_message_id}
    assert {u.reference for u in updates} == {"msg-42"}
    assert twilio.count("msg-42") == 1


def test_undeliverable_number_fails_asynchronously_with_an_error_code(twilio, receiver):
    twilio.set_number("+13055550199", "undeliverable:30005")
    result = sender_for(twilio).send(sms(to="+13055550199", callback=f"{receiver.url}/cb"))
    assert result.accepted
    posts = receiver.wait_for("/cb", 2)
    last = parse_status_callback(posts[-1].form())
    assert last.status is DeliveryStatus.UNDELIVERED and last.error_code == "30005"
    assert last.status.is_failure


@pytest.mark.parametrize(
    ("to", "code", "opted_out"),
    [
        ("+15005550001", "21211", False),  # Twilio magic number: invalid
        ("+15005550009", "21614", False),  # not a mobile number
        ("+15005550004", "21610", True),  # opted out
    ],
)
def test_synchronous_refusals_are_permanent(twilio, to, code, opted_out):
    result = sender_for(twilio).send(sms(to=to))
    assert not result.accepted and result.permanent and result.outcome == "permanent"
    assert result.error_code == code and result.opted_out is opted_out
    assert result.raw["more_info"].endswith(code) and result.raw["status"] == 400


def test_malformed_number_is_refused_as_invalid(twilio):
    result = sender_for(twilio).send(sms(to="555-0142"))
    assert result.error_code == "21211" and result.permanent


def test_wrong_credentials_are_our_fault_not_the_customers(twilio):
    result = TwilioSender(SID, "nope", FROM, api_url=twilio.url).send(sms())
    assert not result.accepted and result.error_code == "20003"
    assert not result.permanent and not result.retryable and result.outcome == "error"


def test_429_is_retried_with_backoff(twilio):
    twilio.inject("http_429", count=2, path="Messages.json")
    result = sender_for(twilio).send(sms(ref="r-429"))
    assert result.accepted and result.attempts == 3
    assert twilio.count("r-429") == 1


def test_5xx_is_retried_after_checking_nothing_was_created(twilio):
    twilio.inject("http_503", count=1, path="Messages.json")
    result = sender_for(twilio).send(sms(ref="r-503"))
    assert result.accepted and result.attempts == 2
    assert twilio.count("r-503") == 1
    lookups = [r for r in twilio.received("Messages.json") if r.method == "GET"]
    assert len(lookups) == 1 and lookups[0].query["To"] == "+13055550142"


def test_500_after_twilio_accepted_is_reconciled_not_resent(twilio):
    twilio.inject("accept_then_500", count=1)
    result = sender_for(twilio).send(sms(ref="r-500"))
    assert result.accepted and result.provider_message_id.startswith("SM")
    assert twilio.count("r-500") == 1
    assert len([r for r in twilio.received("Messages.json") if r.method == "POST"]) == 1


def test_a_messaging_service_message_has_from_null_until_a_sender_is_chosen_and_is_still_found(twilio):
    """Issue 16, point 5: through a Messaging Service Twilio answers ``from: null`` (status ``accepted``) until it
    picks a sender. The client takes that as accepted, and the lookup dispatch's reconciliation makes (with the
    From number it recorded for the attempt) still finds the message instead of sending it a second time."""
    twilio.set_number("+13055550177", "silent")  # no sender chosen yet: the message stays as created
    sender = sender_for(twilio, messaging_service_sid="MG" + "1" * 32)
    started = datetime.now(UTC)
    result = sender.send(sms(to="+13055550177", ref="r-service"))
    assert result.accepted and result.status == "accepted" and result.provider_message_id.startswith("SM")
    assert result.raw["from"] is None and result.raw["messaging_service_sid"] == "MG" + "1" * 32
    found = sender.find_message("+13055550177", sms().text, since=started, from_=sender.from_number)
    assert found is not None and found["sid"] == result.provider_message_id and found["from"] is None


def test_a_messaging_service_message_gets_its_from_once_twilio_picks_the_sender(twilio, receiver):
    sender = TwilioSender(SID, TOKEN, messaging_service_sid="MG" + "2" * 32, api_url=twilio.url)
    result = sender.send(sms(ref="r-picked", callback=f"{receiver.url}/status"))
    assert result.accepted and result.raw["from"] is None
    assert twilio.wait_for_callbacks(2)
    [*_, last] = receiver.received("/status")
    callback = dict(parse_qsl(last.body.decode()))
    assert callback["From"] == FROM and callback["MessagingServiceSid"] == "MG" + "2" * 32
    assert sender.fetch(result.provider_message_id)["from"] == FROM


def test_timeout_after_twilio_accepted_does_not_send_a_second_sms(twilio):
    twilio.inject("accept_then_timeout", count=1, seconds=1.0)
    sender = sender_for(twilio, read_timeout=0.3)
    result = sender.send(sms(ref="r-timeout"))
    assert result.accepted
    assert twilio.count("r-timeout") == 1
    assert sender.fetch(result.provider_message_id)["to"] == "+13055550142"


def test_unreachable_twilio_is_retryable_and_sends_nothing():
    sender = TwilioSender(SID, TOKEN, FROM, api_url="http://127.0.0.1:9", max_attempts=2, backoff=0.01)
    result = sender.send(sms())
    assert result.retryable and not result.accepted and result.attempts == 2


def test_the_reference_travels_in_the_status_callback_url():
    assert (
        with_reference("https://x.test/hooks/twilio/status", "m-1")
        == "https://x.test/hooks/twilio/status?ref=m-1"
    )
    assert with_reference("https://x.test/s?a=1", "m 2") == "https://x.test/s?a=1&ref=m+2"
    assert with_reference("https://x.test/s?ref=keep", "m-3") == "https://x.test/s?ref=keep"


def test_from_env_reads_the_documented_names():
    sender = TwilioSender.from_env(
        {
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM": FROM,
            "TWILIO_API_URL": "http://x:1/",
        }
    )
    assert sender.messages_url == f"http://x:1/2010-04-01/Accounts/{SID}/Messages.json"
    service = TwilioSender.from_env(
        {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM": "MG1"}
    )
    assert service.form(sms())["MessagingServiceSid"] == "MG1"
    with pytest.raises(ConfigurationError):
        TwilioSender.from_env({"TWILIO_ACCOUNT_SID": SID})


# -- inbound -------------------------------------------------------------------------------------------------
def test_inbound_stop_is_signed_parsed_and_blocks_further_sms(twilio, receiver):
    record = twilio.send_inbound("+13055550142", "stop")
    assert record["status"] == 200
    [post] = receiver.received("/hooks/twilio/inbound")
    form = post.form()
    assert verify_twilio_signature(
        TOKEN, f"{receiver.url}/hooks/twilio/inbound", form, post.headers["X-Twilio-Signature"]
    )
    inbound = parse_inbound(form)
    assert inbound.keyword is Keyword.STOP and inbound.sender == "+13055550142" and inbound.recipient == FROM
    assert inbound.channel is Channel.SMS and inbound.provider_message_id.startswith("SM")

    refused = sender_for(twilio).send(sms())
    assert refused.opted_out and refused.permanent and refused.error_code == "21610"

    twilio.send_inbound("+13055550142", "START")
    assert parse_inbound(receiver.received("/hooks/twilio/inbound")[-1].form()).keyword is Keyword.START
    assert sender_for(twilio).send(sms(ref="after-start")).accepted


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", Keyword.STOP),
        (" Unsubscribe ", Keyword.STOP),
        ("stopall", Keyword.STOP),
        ("cancel", Keyword.STOP),
        ("END", Keyword.STOP),
        ("quit", Keyword.STOP),
        ("yes", Keyword.START),
        ("UNSTOP", Keyword.START),
        ("help", Keyword.HELP),
        ("INFO", Keyword.HELP),
        ("please stop texting me", None),
        ("", None),
    ],
)
def test_keyword_detection_follows_twilios_lists(body, keyword):
    form = {"MessageSid": "SM1", "From": "+1", "To": "+2", "Body": body}
    assert parse_inbound(form).keyword == keyword


def test_opt_out_type_from_advanced_opt_out_wins():
    form = {"MessageSid": "SM1", "From": "+1", "To": "+2", "Body": "arrêtez", "OptOutType": "STOP"}
    assert parse_inbound(form).keyword is Keyword.STOP


def test_status_callback_parsing_normalises_and_flags_opt_outs():
    form = dict(
        parse_qsl("MessageSid=SM1&MessageStatus=failed&ErrorCode=21610&To=%2B1555&RawDlrDoneDate=2503141830")
    )
    update = parse_status_callback(form, "https://x.test/hooks/twilio/status?ref=m-9")
    assert update.status is DeliveryStatus.FAILED and update.opted_out and update.reference == "m-9"
    assert update.timestamp.isoformat() == "2025-03-14T18:30:00+00:00"
    assert parse_status_callback({"SmsSid": "SM2", "SmsStatus": "sending"}).status is DeliveryStatus.QUEUED


def test_twiml_reply_is_escaped():
    assert twiml_response().endswith("<Response/>")
    assert "<Message>A &amp; B</Message>" in twiml_response("A & B")


def test_inbox_page_shows_what_the_phone_received(twilio):
    sender_for(twilio).send(sms(text="Acme: hello there. Reply STOP to opt out."))
    listing = requests.get(f"{twilio.url}/inbox", timeout=5)
    assert listing.status_code == 200 and "+13055550142" in listing.text
    thread = requests.get(f"{twilio.url}/inbox/+13055550142", timeout=5)
    assert "Acme: hello there." in thread.text
