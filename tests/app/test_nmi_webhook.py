"""NMI webhooks open cases in real time; a bad signature gets 401 and stores nothing; re-delivery is one event."""

import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.models import InboundEvent, RecoveryCase, Transaction
from sandbox.nmi.server import NmiSimulator

KEY = "whsec-hook-tests"


def delivery(sim, sign="good", event_id=None, event_type="transaction.sale.failure"):
    txn = sim.add_transaction(condition="failed", amount="89.00", decline_code="202")
    return sim.send_webhook(event_type, txn, url=f"{sim.url}/nowhere", sign=sign, event_id=event_id)


def post(client, d):
    headers = {k: v for k, v in d.headers.items() if k.lower() != "content-length"}
    return client.post("/hooks/nmi", data=d.body, headers=headers)


def test_a_signed_failure_opens_one_case_however_often_it_arrives(client, db):
    with NmiSimulator(seed=3, webhook_signing_key=KEY) as sim:
        save_account(
            "nmi-hooks",
            "nmi",
            api_url=f"{sim.url}/api",
            credentials={"security_key": sim.security_key, "webhook_signing_key": KEY},
        )
        db.session.commit()
        d = delivery(sim)
        first = post(client, d)
        assert first.status_code == 200 and first.json["received"]  # stored; applied by the (in-process) worker
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
        again = post(client, d)
        assert again.status_code == 200 and again.json["duplicate"] is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 1
    tx = db.session.scalar(sa.select(Transaction))
    assert tx.decline_reason == "insufficient_funds" and tx.amount_minor == 8900


def test_bad_or_missing_signatures_get_401_and_store_nothing(client, db):
    with NmiSimulator(seed=4, webhook_signing_key=KEY) as sim:
        save_account(
            "nmi-hooks",
            "nmi",
            api_url=f"{sim.url}/api",
            credentials={"security_key": sim.security_key, "webhook_signing_key": KEY},
        )
        db.session.commit()
        for sign in ("bad", "missing"):
            assert post(client, delivery(sim, sign=sign)).status_code == 401
    for model in (InboundEvent, Transaction, RecoveryCase):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0
