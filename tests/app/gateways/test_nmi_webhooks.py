"""Signed NMI webhooks: the simulator sends them over a socket, the client verifies and parses them."""

import hashlib
import hmac
import json

import pytest
from werkzeug.wrappers import Response

from app.gateways.base import GatewayProtocolError, WebhookSignatureError
from sandbox.harness import SimulatorServer

from .conftest import SIGNING_KEY, make_gateway


class Receiver(SimulatorServer):
    name = "receiver"

    def handle(self, request):
        return Response("ok", status=200)


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def delivered(sim, receiver):
    receiver.reset()

    def deliver(event_type="transaction.sale.failure", **kw):
        txn = sim.add_transaction(
            decline_code="202", merchant_advice_code="02", source=kw.pop("source", "api")
        )
        delivery = sim.send_webhook(event_type, txn, url=f"{receiver.url}/hooks/nmi", **kw)
        assert delivery.status == 200
        request = receiver.received("/hooks/nmi")[-1]
        return txn, request

    return deliver


def sign(body: bytes, nonce: str = "abc123", key: str = SIGNING_KEY) -> str:
    return f"t={nonce},s={hmac.new(key.encode(), nonce.encode() + b'.' + body, hashlib.sha256).hexdigest()}"


def test_a_signed_sale_failure_is_verified_and_parsed(delivered, gateway):
    txn, request = delivered()
    event = gateway.verify_webhook(request.headers, request.body)
    assert event.event_type == "transaction.sale.failure" and event.event_id
    failed = event.transaction
    assert failed.gateway_transaction_id == txn.transaction_id
    assert failed.decline_code == "202" and failed.merchant_advice_code == "02"
    assert failed.amount_minor > 0 and failed.currency == txn.currency
    assert failed.failed_at == txn.created and failed.order_id == txn.order_id
    assert failed.customer.email == txn.customer.email.lower()
    assert failed.customer.customer_id == txn.customer.customer_vault_id
    assert failed.customer.phone_e164 and failed.customer.phone_e164.startswith("+")
    assert failed.customer.card_masked == txn.customer.card.cc_number


def test_headers_are_case_insensitive(delivered, gateway):
    _txn, request = delivered()
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert gateway.verify_webhook(headers, request.body).transaction is not None


def test_recurring_failures_carry_the_subscription(delivered, gateway):
    _txn, request = delivered(source="recurring")
    event = gateway.verify_webhook(request.headers, request.body)
    assert event.transaction.source == "recurring" and event.raw["event_body"]["subscription_id"]


def test_other_events_have_no_transaction(delivered, gateway):
    _txn, request = delivered("transaction.sale.success")
    event = gateway.verify_webhook(request.headers, request.body)
    assert event.transaction is None and event.event_type == "transaction.sale.success"


def test_a_bad_signature_is_refused(delivered, gateway):
    _txn, request = delivered(sign="bad")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        gateway.verify_webhook(request.headers, request.body)


def test_a_missing_signature_is_refused(delivered, gateway):
    _txn, request = delivered(sign="missing")
    with pytest.raises(WebhookSignatureError, match="missing"):
        gateway.verify_webhook(request.headers, request.body)


def test_a_tampered_body_is_refused(delivered, gateway):
    _txn, request = delivered()
    body = request.body.replace(b'"202"', b'"100"')
    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(request.headers, body)
    reserialised = json.dumps(json.loads(request.body), indent=1).encode()
    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook(request.headers, reserialised)


def test_a_replayed_delivery_is_the_same_event(delivered, sim, receiver, gateway):
    txn, request = delivered()
    first = gateway.verify_webhook(request.headers, request.body)
    again = gateway.verify_webhook(request.headers, request.body)  # the very same bytes, replayed
    assert again.event_id == first.event_id
    sim.send_webhook(
        "transaction.sale.failure", txn, url=f"{receiver.url}/hooks/nmi", event_id=first.event_id
    )
    redelivered = receiver.received("/hooks/nmi")[-1]
    assert redelivered.headers["Webhook-Signature"] != request.headers["Webhook-Signature"]  # a fresh nonce
    assert gateway.verify_webhook(redelivered.headers, redelivered.body).event_id == first.event_id


@pytest.mark.parametrize("header", ["", "s=abcd", "t=,s=abcd", "t=1;s=ab", "t=1,s=not-hex", "garbage"])
def test_malformed_headers(gateway, header):
    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook({"Webhook-Signature": header}, b"{}")


def test_wrong_key_and_no_key(sim, gateway):
    body = b'{"event_id": "e", "event_type": "x", "event_body": {}}'
    with pytest.raises(WebhookSignatureError):
        gateway.verify_webhook({"Webhook-Signature": sign(body, key="other")}, body)
    assert gateway.verify_webhook({"Webhook-Signature": sign(body)}, body).event_id == "e"
    with pytest.raises(WebhookSignatureError):
        make_gateway(sim, webhook_signing_key=None).verify_webhook({"Webhook-Signature": sign(body)}, body)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event_type": "x"}', b"\xff\xfe"])
def test_signed_but_unusable_bodies(gateway, body):
    with pytest.raises(GatewayProtocolError):
        gateway.verify_webhook({"Webhook-Signature": sign(body)}, body)


def test_control_api_sends_webhooks(sim, receiver, gateway):
    import requests

    receiver.reset()
    answer = requests.post(
        f"{sim.url}/_control/webhook",
        json={
            "event_type": "transaction.sale.failure",
            "url": f"{receiver.url}/hooks/nmi",
            "transaction": {},
        },
        timeout=5,
    )
    assert answer.status_code == 201 and answer.json()["status"] == 200
    request = receiver.received("/hooks/nmi")[-1]
    assert gateway.verify_webhook(request.headers, request.body).event_id == answer.json()["event_id"]
