"""A server configured from the environment (NMI_SECURITY_KEY, NMI_WEBHOOK_SIGNING_KEY) that receives its first
NMI webhooks all at once: each request finds no account yet and makes it; one wins, the others use it. Every
webhook is answered 200 and ingested once (it used to be a 500 for all but one: a duplicate account name)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import ENV_ACCOUNT_NAME
from app.models import GatewayAccount, InboundEvent, RecoveryCase
from sandbox.nmi.server import NmiSimulator
from tests.live_server import LiveServer

KEY = "whsec-concurrent"


def test_first_webhooks_arriving_together_make_one_account_and_are_all_ingested(app, db):
    with NmiSimulator(seed=11, webhook_signing_key=KEY) as sim:
        app.config.update(NMI_SECURITY_KEY=sim.security_key, NMI_WEBHOOK_SIGNING_KEY=KEY,
                          NMI_API_URL=f"{sim.url}/api")
        deliveries = [sim.send_webhook("transaction.sale.failure", sim.add_transaction(), url=f"{sim.url}/nowhere")
                      for _ in range(16)]
        with LiveServer(app) as live:
            def post(d):  # type: ignore[no-untyped-def]
                headers = {k: v for k, v in d.headers.items() if k.lower() != "content-length"}
                return requests.post(f"{live.url}/hooks/nmi", data=d.body, headers=headers, timeout=30).status_code

            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(post, deliveries))
    assert statuses == [200] * 16
    db.session.rollback()
    names = db.session.scalars(sa.select(GatewayAccount.name)).all()
    assert names == [ENV_ACCOUNT_NAME]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 16
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 16
