"""Issue 15, low findings on webhooks: a signed body nested thousands deep gave a 500; a refusal told the sender
internal details (account names, parse errors) and called a payload problem "signature not accepted", so a provider
retried a bad delivery for ever as if its signature were wrong."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.channels.whatsapp import whatsapp_signature
from app.models import InboundEvent

NMI_KEY = "whsec-errors"
WA_SECRET = "wa-errors-secret"
DEEP = b"[" * 100_000 + b"]" * 100_000


def nmi_signed(body: bytes, key: str = NMI_KEY) -> dict[str, str]:
    nonce = "n0nce"
    digest = hmac.new(key.encode(), nonce.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Webhook-Signature": f"t={nonce},s={digest}", "Content-Type": "application/json"}


def nmi_account(db):  # type: ignore[no-untyped-def]
    save_account("nmi-secret-name", "nmi", api_url="http://127.0.0.1:9/api",
                 credentials={"security_key": "sk", "webhook_signing_key": NMI_KEY})
    db.session.commit()


def test_a_signed_whatsapp_body_nested_thousands_deep_is_a_400_not_a_500(app, client, db):
    app.config.update(WHATSAPP_APP_SECRET=WA_SECRET)
    answer = client.post("/hooks/whatsapp", data=DEEP, content_type="application/json",
                         headers={"X-Hub-Signature-256": whatsapp_signature(WA_SECRET, DEEP)})
    assert answer.status_code == 400 and answer.json == {"error": "payload not understood"}


def test_a_signed_nmi_body_nested_thousands_deep_is_a_400_not_a_500(client, db):
    nmi_account(db)
    answer = client.post("/hooks/nmi", data=DEEP, headers=nmi_signed(DEEP))
    assert answer.status_code == 400
    assert answer.json == {"error": "payload not understood", "why": "the body nests too deeply"}


def test_a_signed_nmi_payload_that_is_wrong_is_a_400_and_names_nothing_internal(client, db, caplog):
    nmi_account(db)
    body = json.dumps({"event_type": "transaction.sale.failure"}).encode()  # no event_id
    with caplog.at_level(logging.WARNING):
        answer = client.post("/hooks/nmi", data=body, headers=nmi_signed(body))
    assert answer.status_code == 400  # not 401: the signature was right, a retry of the same body cannot help
    # signed, so the sender (who holds the key) is told what is wrong, in our words: no account, no parser's text
    assert answer.json == {"error": "payload not understood", "why": "no event_id or event_type"}
    assert "event_id" in caplog.text and "nmi-secret-name" in caplog.text  # the operator's log says what and where
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 0


def test_a_forged_nmi_webhook_learns_nothing_about_the_accounts(client, db):
    nmi_account(db)
    body = json.dumps({"event_id": "e1", "event_type": "transaction.sale.failure", "event_body": {}}).encode()
    answer = client.post("/hooks/nmi", data=body, headers=nmi_signed(body, key="a guess"))
    assert answer.status_code == 401 and answer.json == {"error": "signature not accepted"}
    assert "nmi-secret-name" not in answer.get_data(as_text=True)
