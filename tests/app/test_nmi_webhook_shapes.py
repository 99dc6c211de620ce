"""Issue 16, point 5: NMI webhooks in both shapes in use: the transaction's fields directly under ``event_body`` or
nested under ``event_body.transaction``. A correctly signed webhook in either shape opens its case; a signed one that
cannot be used is refused with a 4xx that says why, never blamed on the signature."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.models import Customer, InboundEvent, RecoveryCase, Transaction
from sandbox.nmi.server import NmiSimulator

KEY = "whsec-shapes"


@pytest.fixture
def nmi(db):  # type: ignore[no-untyped-def]
    with NmiSimulator(seed=11, webhook_signing_key=KEY) as sim:
        save_account("nmi-shapes", "nmi", api_url=f"{sim.url}/api",
                     credentials={"security_key": sim.security_key, "webhook_signing_key": KEY})
        db.session.commit()
        yield sim


def post(client, delivery):  # type: ignore[no-untyped-def]
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}
    return client.post("/hooks/nmi", data=delivery.body, headers=headers)


@pytest.mark.parametrize("event_type, source", [("transaction.sale.failure", "api"),
                                                ("recurring.subscription.payment.failure", "recurring")])
def test_a_signed_failure_nested_under_event_body_transaction_opens_its_case(client, db, nmi, event_type, source):
    txn = nmi.add_transaction(condition="failed", amount="89.00", decline_code="202", source=source,
                              customer={"email": "nested.shape@example.com"})
    delivery = nmi.send_webhook(event_type, txn, url=f"{nmi.url}/nowhere", shape="nested")
    event_body = json.loads(delivery.body)["event_body"]
    assert set(event_body) == {"merchant", "features", "transaction"}  # the simulator sends the nested shape
    assert event_body["transaction"]["transaction_id"] == txn.transaction_id

    answer = post(client, delivery)
    assert answer.status_code == 200 and answer.json["received"], answer.json
    stored = db.session.scalar(sa.select(Transaction))
    assert stored.gateway_transaction_id == txn.transaction_id and stored.amount_minor == 8900
    assert stored.decline_reason == "insufficient_funds"
    assert db.session.scalar(sa.select(Customer.email)) == "nested.shape@example.com"
    assert post(client, delivery).json["duplicate"] is True  # re-delivered: still one case
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1


def test_both_shapes_of_one_failure_are_the_same_transaction(client, db, nmi):
    txn = nmi.add_transaction(condition="failed", amount="12.50", decline_code="201")
    flat = post(client, nmi.send_webhook("transaction.sale.failure", txn, url=f"{nmi.url}/nowhere", shape="flat"))
    nested = post(client, nmi.send_webhook("transaction.sale.failure", txn, url=f"{nmi.url}/nowhere",
                                           shape="nested"))
    assert flat.status_code == nested.status_code == 200
    assert flat.json["received"] != nested.json["received"]  # two events (their ids differ)
    # the same failure: one transaction, one case
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1


@pytest.mark.parametrize("body, why", [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "the body is not a JSON object"),
    (json.dumps({"event_type": "transaction.sale.failure", "event_body": {}}).encode(), "no event_id or event_type"),
])
def test_a_signed_webhook_that_cannot_be_used_is_a_4xx_that_says_why(client, db, nmi, body, why):
    answer = client.post("/hooks/nmi", data=body, headers={"Webhook-Signature": nmi.sign(body),
                                                           "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.json  # not 401: the signature was right
    assert answer.json == {"error": "payload not understood", "why": why}
    assert "nmi-shapes" not in answer.get_data(as_text=True)  # and it names no account
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 0


def test_a_wrong_signature_is_still_only_that(client, db, nmi):
    txn = nmi.add_transaction(condition="failed")
    answer = post(client, nmi.send_webhook("transaction.sale.failure", txn, url=f"{nmi.url}/nowhere", sign="bad",
                                           shape="nested"))
    assert answer.status_code == 401 and answer.json == {"error": "signature not accepted"}
