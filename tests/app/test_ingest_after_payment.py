"""A paid customer is never dunned again: the whole story over real HTTP, on SQLite and MariaDB.

A failed payment at the merchant (NMI simulator) is fetched and planned with the standard policy; the customer
opens the payment link (the app served on a real socket), a new card is declined, the card on file pays; then two
more fetches through the Query API and NMI's webhooks for the same transactions (posted by the simulator to the
app) bring Recoup's own charges back. Nothing new may come of them: no case, no message, the case stays recovered
and the card on file is the one that paid.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.ingest.transactions import fetch_account
from app.models import Customer, OutboxMessage, Payment, RecoveryCase, Transaction
from app.payments.links import issue_payment_link
from app.recovery.policies import activate_text
from app.web.pay import wrong_submissions
from tests.live_server import LiveServer

KEY = "whsec-after-payment"
NMI_SEED = 53  # this module's NMI simulator (tests/app/conftest.py)
NMI_SIGNING_KEY = KEY
STANDARD = (Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy").read_text()
CLIENT = {"timeout": [2.0, 5.0], "max_attempts": 2, "backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture
def site(app, nmi_sim):
    """The app on a real socket; NMI's webhooks and Collect.js wired to it and to the simulator."""
    nmi_sim.clear()
    nmi_sim.reset()
    wrong_submissions.reset()
    server = LiveServer(app)
    base = server.url
    nmi_sim.webhook_url = f"{base}/hooks/nmi"
    app.config.update(PUBLIC_BASE_URL=base, NMI_COLLECT_JS_URL=f"{nmi_sim.url}/token/Collect.js",
                      NMI_TOKENIZATION_KEY=nmi_sim.collect.tokenization_key)
    account = save_account("nmi-after", "nmi", api_url=f"{nmi_sim.url}/api", settings={"client": CLIENT},
                           credentials={"security_key": nmi_sim.security_key, "webhook_signing_key": KEY})
    activate_text("standard", STANDARD, actor=None, note="after-payment scenario")
    db.session.commit()
    try:
        with server:
            yield base, account, nmi_sim
    finally:
        nmi_sim.webhook_url = None
        nmi_sim.clear()


def fresh_read():
    db.session.rollback()  # a fresh snapshot: the server thread committed (MariaDB is REPEATABLE READ)
    db.session.expire_all()


def form_fields(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'name="(attempt|csrf_token)" value="([^"]*)"', html))
    assert fields.get("attempt"), html[:2000]
    return fields


def test_a_customer_who_paid_after_a_declined_card_is_never_dunned_again(app, site):
    base, account, nmi = site
    failure = nmi.add_transaction(condition="failed", amount="120.00", currency="USD", decline_code="202",
                                  customer_vault_id="CV-PAID-1", order_id="ORD-PAID-1",
                                  customer={"first_name": "Zoë", "email": "zoe.paid@example.com", "country": "US",
                                            "state": "FL", "postal_code": "33101", "phone": "3055550142"})
    card_on_file = nmi.vault("CV-PAID-1").card.cc_number
    assert fetch_account(account.id).result.new_cases == 1
    case = db.session.scalar(sa.select(RecoveryCase))
    customer_id = case.customer_id
    planned = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.customer_id == customer_id)).all()
    assert planned and all(m.state == "scheduled" for m in planned), "the standard policy plans reminders"
    link = f"{base}/pay/{issue_payment_link(case, app.config['SECRET_KEY'])}"
    db.session.commit()

    browser = requests.Session()
    page = browser.get(link, timeout=10)
    assert page.status_code == 200 and "$120.00" in page.text and f"ending {card_on_file[-4:]}" in page.text
    declining = requests.post(f"{nmi.url}/token/api/tokenize", timeout=5, json={
        "tokenization_key": nmi.collect.tokenization_key, "ccnumber": "4000000000000002", "ccexp": "1230",
        "cvv": "123"}).json()
    declined = browser.post(link, timeout=30, data={**form_fields(page.text), "method": "new_card",
                                                    "payment_token": declining["token"], "card_last4": "0002",
                                                    "card_brand": "visa"})
    assert declined.status_code == 200 and "did not go through" in declined.text
    page = browser.get(link, timeout=10)  # one tap still offers the card on file, which now has the money
    assert f"ending {card_on_file[-4:]}" in page.text and "ending 0002" not in page.text
    paid = browser.post(link, timeout=30, data={**form_fields(page.text), "method": "vault"})
    assert paid.status_code == 200 and "Payment received" in paid.text

    fresh_read()
    assert db.session.get(RecoveryCase, case.id).state == "recovered"
    messages_after_payment = {(m.id, m.state) for m in db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.customer_id == customer_id))}
    assert all(state != "scheduled" for _, state in messages_after_payment)

    # two more fetches, and NMI's webhooks for the very same transactions (ours and the merchant's)
    reports = [fetch_account(account.id) for _ in range(2)]
    assert all(r.ok and r.result.new_cases == 0 and r.sales.ok for r in reports), [r.summary() for r in reports]
    ours = [t for t in nmi.transactions if t.order_id.startswith(f"rc{case.id}-")]
    assert sorted(t.condition for t in ours) == ["failed", "pendingsettlement"]
    for txn in [*ours, failure]:
        kind = "transaction.sale.failure" if txn.condition == "failed" else "transaction.sale.success"
        delivery = nmi.send_webhook(kind, txn)
        assert delivery.status == 200, delivery.error

    fresh_read()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    assert db.session.get(RecoveryCase, case.id).state == "recovered"
    assert {(m.id, m.state) for m in db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.customer_id == customer_id))} == messages_after_payment
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction).where(
        Transaction.status == "failed")) == 1
    customer = db.session.get(Customer, customer_id)
    assert customer.failed_payments == 1 and customer.successful_payments == 1
    assert customer.card_masked == card_on_file and nmi.vault("CV-PAID-1").card.cc_number == card_on_file
    assert sorted(db.session.scalars(sa.select(Payment.state))) == ["approved", "declined"]
