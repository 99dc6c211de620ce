"""The demo's world: the provider simulators, a store with failed payments, the standard policy with an experiment
running (app.demo.policy), a scheduler."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app.demo.policy import demo_policy_text
from app.extensions import db
from rules.vocabulary import Channel
from workers import jobs

log = logging.getLogger(__name__)

NMI_SIGNING_KEY = "demo-nmi-webhook-signing-key"


def start_world(
    app: Flask, *, public_url: str, fixed_ports: bool = True, inboxes: Path | None = None, history: int = 0
) -> dict[str, Any]:
    """Start the simulators (their inboxes kept in ``inboxes`` when given), point the app at them, seed the store
    (and, on a database with no case yet, ``history`` failed payments of the past: app.demo.history), fetch and
    dispatch once, and start the periodic jobs."""
    from app.demo.simulators import start_simulators
    from app.messages.default_templates import whatsapp_approved_templates
    from app.outbox.senders import reset_senders
    from app.queue import InProcessScheduler, PeriodicJob
    from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM
    from sandbox.whatsapp.server import DEFAULT_APP_SECRET, DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN

    options: dict[str, dict[str, Any]] = {
        "nmi": {"webhook_url": f"{public_url}/hooks/nmi", "webhook_signing_key": NMI_SIGNING_KEY, "seed": 2026},
        "twilio": {
            "status_callback_url": f"{public_url}/hooks/twilio/status",
            "inbound_url": f"{public_url}/hooks/twilio/inbound",
        },
        "whatsapp": {"webhook_url": f"{public_url}/hooks/whatsapp", "templates": whatsapp_approved_templates()},
    }
    for name, extra in _inbox_files(inboxes).items():
        options[name] = {**options.get(name, {}), **extra}
    sims = start_simulators(fixed_ports=fixed_ports, **options)
    inbox_urls = {Channel.EMAIL: f"{sims['smtp'].control_url}/inbox", Channel.SMS: f"{sims['twilio'].url}/inbox",
                  Channel.WHATSAPP: f"{sims['whatsapp'].url}/inbox"}
    app.config.update(
        PUBLIC_BASE_URL=public_url,
        NMI_API_URL=f"{sims['nmi'].url}/api",
        SMTP_URL=sims["smtp"].url,
        TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN,
        TWILIO_FROM=DEFAULT_FROM,
        TWILIO_API_URL=sims["twilio"].url,
        WHATSAPP_TOKEN=DEFAULT_TOKEN,
        WHATSAPP_PHONE_NUMBER_ID=DEFAULT_PHONE_NUMBER_ID,
        WHATSAPP_APP_SECRET=DEFAULT_APP_SECRET,
        WHATSAPP_API_URL=f"{sims['whatsapp'].url}/v21.0",
        WHATSAPP_VERIFY_TOKEN="demo-verify-token",
        NMI_COLLECT_JS_URL=f"{sims['nmi'].url}/token/Collect.js",
        NMI_TOKENIZATION_KEY="sandbox-tokenization-key",
        MERCHANT_SUPPORT_EMAIL="help@store.example",
        DEMO_INBOXES=inbox_urls,
    )
    reset_senders(app)
    sims["nmi"].seed_population(failed=80, succeeded=160, days=4, seed=2026)
    with app.app_context():
        sims["nmi"].continue_ids_after(last_gateway_id())  # after a restart: never an id the database holds
        from app.settings import get_setting, save_settings

        if get_setting("message_costs") is None:  # what Twilio and Meta charge, roughly, so the dashboard nets it
            save_settings({"message_costs": {"currency": "USD", "prices": {
                Channel.EMAIL: "0.001", Channel.SMS: "0.0079", Channel.WHATSAPP: "0.025"}}}, actor="demo")
        seed_store(app, sims["nmi"])
        past = seed_history(history)
        restore_demo_vault(sims["nmi"].url)
        restore_open_vaults(sims["nmi"])
        from app.ingest.transactions import fetch_accounts

        summaries = [report.summary() for report in fetch_accounts()]
        from app.outbox.run import dispatch_due

        sent = dispatch_due()
    scheduler = InProcessScheduler(
        app,
        [
            PeriodicJob("fetch", jobs.fetch_all, timedelta(seconds=60)),
            PeriodicJob("dispatch", jobs.dispatch_due, timedelta(seconds=10)),
            PeriodicJob("analytics", jobs.refresh_analytics, timedelta(seconds=30)),
        ],
    )
    scheduler.start()
    return {"simulators": sims, "scheduler": scheduler, "fetched": summaries, "dispatched": sent,
            "inboxes": inbox_urls, "history": past}


def last_gateway_id() -> int:
    """The highest numeric NMI transaction id the database holds (sales, refunds, payments), 0 when none."""
    from app.models import Payment, Transaction

    highest = 0
    for column in (Transaction.gateway_transaction_id, Payment.gateway_transaction_id):
        ids = db.session.scalars(sa.select(column).where(column.is_not(None)))
        highest = max([highest, *(int(value) for value in ids if value.isdigit())])
    return highest


def seed_history(count: int) -> Any:
    """The demo's past (app.demo.history), counted for the dashboard, when the database has no case yet."""
    if not count:
        return None
    from app.demo.history import seed_if_new

    return seed_if_new(count)


def _inbox_files(folder: Path | None) -> dict[str, dict[str, Any]]:
    """Options that make the messaging simulators keep their inboxes in ``folder`` (one file each)."""
    if folder is None:
        return {}
    return {name: {"inbox_file": str(folder / f"{name}.jsonl")} for name in ("smtp", "twilio", "whatsapp")}


def seed_store(app: Flask, nmi: Any) -> None:
    from app.accounts.gateway_accounts import save_account
    from app.models import GatewayAccount, Team
    from app.recovery.policies import activate_text, active_version

    if db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-demo")) is None:
        save_account(
            "nmi-demo",
            "nmi",
            api_url=f"{nmi.url}/api",
            actor="demo",
            credentials={"security_key": nmi.security_key, "webhook_signing_key": NMI_SIGNING_KEY},
        )
    else:  # simulators may be on other ports this time
        account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-demo"))
        account.api_url = f"{nmi.url}/api"
    for name, email in (
        ("account-managers", "account-managers@store.example"),
        ("collections", "collections@store.example"),
    ):
        if db.session.scalar(sa.select(Team).where(Team.name == name)) is None:
            db.session.add(Team(name=name, email=email))
    db.session.commit()
    if active_version() is None:
        activate_text("standard", demo_policy_text(), actor=None,
                      note="the demo's starting policy: the standard one, with an experiment running")


def restore_open_vaults(nmi: Any) -> int:
    """Customers with an open case keep a card on file the simulator knows (it forgets its vault when it stops):
    the history's still-open cases may be retried or paid with the card on file as the demo goes on."""
    import requests

    from app.models import Customer, RecoveryCase
    from rules.case_states import ACTIVE

    rows = db.session.execute(
        sa.select(Customer).where(Customer.vault_id.is_not(None), Customer.id.in_(
            sa.select(RecoveryCase.customer_id).where(RecoveryCase.state.in_(ACTIVE))))).scalars()
    restored = 0
    with requests.Session() as session:
        for c in rows:
            if nmi.vault(c.vault_id) is not None:
                continue
            record = {"customer_vault_id": c.vault_id, "first_name": c.first_name or "", "last_name": c.last_name or "",
                      "email": c.email or "", "phone": c.phone_e164 or "", "country": c.country or "",
                      "state": c.region or "", "postal_code": c.postal_code or "", "city": c.city or "",
                      "address_1": ""}
            restored += session.post(f"{nmi.url}/_control/vault", json=record, timeout=10).status_code == 201
    return restored


def restore_demo_vault(nmi_url: str) -> int:
    """The customers the demo control page made keep a card on file across a restart: the simulator forgets its
    vault when it stops, the database does not (a one-tap payment charges the vault record)."""
    import requests

    from app.demo.control import DEMO_VAULT_PREFIX
    from app.models import Customer

    customers = db.session.scalars(sa.select(Customer).where(Customer.vault_id.like(f"{DEMO_VAULT_PREFIX}%")))
    restored = 0
    for c in customers:
        record = {"customer_vault_id": c.vault_id, "first_name": c.first_name or "", "last_name": c.last_name or "",
                  "email": c.email or "", "phone": c.phone_e164 or "", "country": c.country or "",
                  "state": c.region or "", "postal_code": c.postal_code or "", "city": c.city or "", "address_1": ""}
        response = requests.post(f"{nmi_url}/_control/vault", json=record, timeout=10)
        restored += response.status_code == 201
    return restored
