"""A believable past for the demo: about 90 days of failed payments and what Recoup did with them, so the dashboard
tells a story on first open (issue 17, point 6).

``seed_history`` makes the store's customers and their failed payments (app.demo.history_people), plays them out
with the real planner and the active policy (app.demo.history_sim: every case planned as of the moment its payment
failed, every message placed by the timing core in the customer's zone, checked again at send time, falling back
on opt-outs and missing addresses) and decides what customers did from a seeded model with a few planted stories
(app.demo.history_story). Every case is planned: the planner takes well under a millisecond, so 20,000 cases need
no sampling. The rows are written set-based (one INSERT per table and chunk, ids assigned up front), never
through the senders: nothing reaches a simulator. When the policy runs an experiment (the demo's does:
app.demo.policy), its row runs from the history's first day and each case the planner put in an arm is kept with
its arm, as planning keeps it, exposed at the case's first message sent, so the results page has a past to read.

The history ends at the business clock's now (app.clock): the last days' cases are still open, their next steps
scheduled, and the running demo carries on with them. Rows the history sent are marked ``claimed_by =
"demo-history"``. Nothing is written to the audit log but one entry saying that a history was seeded (its
entries could not be dated in the past: the chain is written as things happen), so ``flask audit verify`` holds.

How many failures: ``RECOUP_DEMO_HISTORY`` (or the app's ``DEMO_HISTORY``), default 20,000; 0 seeds none. It is
seeded once, on a database that has no case yet (the setting :data:`MARK` remembers it).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from flask import Flask, current_app

from app.audit import record
from app.clock import business_now
from app.demo.history_people import Person, failures
from app.demo.history_rows import Tables, tables
from app.demo.history_sim import Setup, Timeline
from app.demo.history_story import Story
from app.extensions import db
from app.models import (
    ArmAssignment,
    CaseTransition,
    ConsentEvent,
    Customer,
    EscalationTask,
    Experiment,
    GatewayAccount,
    MessageEvent,
    OptOut,
    OutboxMessage,
    Payment,
    PaymentLink,
    RecoveryCase,
    Setting,
    Team,
    Transaction,
)
from app.models.types import as_utc
from app.payments.receipts import RECEIPT_TEMPLATE
from rules.case_states import CaseState
from rules.vocabulary import CHANNELS

log = logging.getLogger(__name__)

DEFAULT_FAILURES = 20_000
DAYS = 90
SEED = 2026
ENV = "RECOUP_DEMO_HISTORY"
#: the setting that says a history was seeded (and what it was)
MARK = "demo.history"
CHUNK = 5000


@dataclass(frozen=True)
class HistoryReport:
    failures: int
    customers: int
    messages: int  # customer messages sent (email, SMS, WhatsApp)
    recovered: int  # through Recoup
    still_open: int
    rows: int  # every row written
    days: int
    seconds: float  # seeding (play and write)
    counted_seconds: float = 0.0  # the dashboard's rollups rebuilt

    def summary(self) -> str:
        return (f"{self.failures} failed payments over {self.days} days ({self.customers} customers): {self.messages} "
                f"messages sent, {self.recovered} recovered through Recoup, {self.still_open} still open; "
                f"{self.rows} rows in {self.seconds:.1f} s, dashboard counted in {self.counted_seconds:.1f} s")


def wanted(app: Flask) -> int:
    """How many failures the demo's history should have (the app's ``DEMO_HISTORY``, else ``RECOUP_DEMO_HISTORY``)."""
    value = app.config.get("DEMO_HISTORY")
    if value in (None, ""):
        value = os.environ.get(ENV, "")
    try:
        return max(0, int(str(value).replace("_", ""))) if str(value).strip() else DEFAULT_FAILURES
    except ValueError:
        log.warning("%s=%r is not a number: seeding the default %d failures", ENV, value, DEFAULT_FAILURES)
        return DEFAULT_FAILURES


def seed_if_new(count: int) -> HistoryReport | None:
    """Seed ``count`` failures and count them for the dashboard, unless a history was seeded or the database has
    cases already."""
    if not count:
        return None
    if db.session.get(Setting, MARK) is not None or db.session.scalar(sa.select(RecoveryCase.id).limit(1)):
        log.info("demo history: the database has cases already; nothing seeded")
        return None
    report = seed_history(count)
    from app.analytics.rollups import rebuild

    started = time.perf_counter()
    rebuild()
    report = replace(report, counted_seconds=time.perf_counter() - started)
    log.info("demo history: %s", report.summary())
    return report


def seed_history(count: int = DEFAULT_FAILURES, *, days: int = DAYS, seed: int = SEED,
                 now: datetime | None = None) -> HistoryReport:
    """Seed ``count`` failed payments over the ``days`` days before ``now`` (the business clock) and what Recoup
    did with them; commits. Needs the active policy and a gateway account (the demo's world makes both)."""
    from app.recovery.experiments import experiment_for, stopped_arms
    from app.recovery.planning import contact_windows
    from app.recovery.policies import active_version, compiled
    from rules.contact_settings import parse_contact_windows

    started = time.perf_counter()
    version = active_version()
    if version is None:
        raise RuntimeError("the demo history needs an active policy (the demo's world activates the standard one)")
    account = _account()
    now = (now or business_now()).replace(microsecond=0)
    policy = compiled(version)
    experiment = experiment_for(version, policy, actor="demo")
    setup = Setup(policy=policy, version_number=version.number, version_id=version.id,
                  windows=parse_contact_windows(contact_windows()), now=now, account_id=account.id,
                  ids=_next_ids(), experiment_id=experiment.id if experiment is not None else None,
                  stopped_arms=stopped_arms(experiment), **_app_setup())
    timeline = Timeline(setup, Story(seed), seed)
    timeline.run(failures(count, end=now - timedelta(minutes=1), days=days, seed=seed))
    made = tables(timeline)
    if experiment is not None:
        _started_with_the_history(experiment, made)
    rows = write(made)
    sent = sum(1 for m in made.outbox_messages
               if m["sent_at"] is not None and m["channel"] in CHANNELS and m["template"] != RECEIPT_TEMPLATE)
    report = HistoryReport(
        failures=len(made.recovery_cases), customers=len(made.customers), messages=sent,
        recovered=sum(1 for c in made.recovery_cases if c["state"] == CaseState.RECOVERED and not c["recovered_via"]),
        still_open=sum(1 for c in made.recovery_cases if c["closed_at"] is None), rows=rows, days=days,
        seconds=time.perf_counter() - started)
    db.session.add(Setting(key=MARK, value={"failures": count, "days": days, "seed": seed,
                                            "until": now.isoformat()}, updated_by="demo"))
    record("demo", "demo.history_seeded", "setting", MARK,
           {"failures": report.failures, "customers": report.customers, "messages": report.messages,
            "days": days, "seed": seed, "until": now.isoformat()})
    db.session.commit()
    return report


def _started_with_the_history(experiment: Experiment, made: Tables) -> None:
    """The experiment (made when its version was activated, a moment ago) ran since the history's first case was
    planned into an arm."""
    first = min((a["assigned_at"] for a in made.experiment_assignments), default=None)
    if first is not None and first < as_utc(experiment.started_at):
        experiment.started_at = first


def _account() -> GatewayAccount:
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-demo"))
    account = account or db.session.scalar(sa.select(GatewayAccount).order_by(GatewayAccount.id))
    if account is None:
        raise RuntimeError("the demo history needs a gateway account (the demo's world saves nmi-demo)")
    return account


def _next_ids() -> dict[str, int]:
    """The first free id of each table whose rows others point at (ids are given up front, so one INSERT writes a
    table's rows with their links)."""
    models: dict[str, Any] = {"customers": Customer, "transactions": Transaction, "recovery_cases": RecoveryCase,
              "outbox_messages": OutboxMessage, "payment_links": PaymentLink, "payments": Payment}
    return {name: (db.session.scalar(sa.select(sa.func.max(model.id))) or 0) + 1 for name, model in models.items()}


def _app_setup() -> dict[str, Any]:
    """What the history takes from the app: its URL, senders' names, teams, settings the ingest reads."""
    from app.ingest.customer_locale import guess_locale
    from app.payments.links import new_payment_link
    from app.settings import get_setting
    from rules.product_types import ProductLine, ProductTypeRules, value_band

    config = current_app.config
    rules = ProductTypeRules.from_config(get_setting("product_rules") or [],
                                         default=get_setting("default_product_type") or "one_time")
    bands = get_setting("value_bands")
    secret = config["SECRET_KEY"]
    sender = (parse_qs(urlsplit(config.get("SMTP_URL") or "").query).get("from") or ["billing@store.example"])[0]

    def locale_of(person: Person) -> tuple[str, str]:
        if person.spanish and person.country == "US":
            return "es_US", "manual"  # they chose Spanish at checkout; the country alone says English
        return guess_locale(person.country), "guessed"

    def link_for(case_id: int, message_id: int) -> tuple[str, dict[str, Any]]:
        token, row = new_payment_link(case_id, secret, message_id=message_id)
        return token, {"token_hash": row["token_hash"], "short_code_hash": row["short_code_hash"]}

    return {
        "base_url": (config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "email_domain": sender.rpartition("@")[2] or "store.example",
        "sms_from": config.get("TWILIO_FROM") or "+15005550006",
        "twilio_account": config.get("TWILIO_ACCOUNT_SID") or "AC" + "0" * 32,
        "teams": {t.name: t.email for t in db.session.scalars(sa.select(Team))},
        "locale_of": locale_of,
        "band_of": lambda amount, currency: value_band(amount, currency, bands),
        "product_of": lambda sku, description: rules.classify([ProductLine(sku=sku, description=description)],
                                                              description),
        "link_for": link_for,
    }


def write(tables: Tables) -> int:
    """Insert the tables' rows in an order the foreign keys accept; then credit the recovered cases' messages."""
    plan = ((Customer, tables.customers), (Transaction, tables.transactions), (RecoveryCase, tables.recovery_cases),
            (CaseTransition, tables.case_transitions), (OutboxMessage, tables.outbox_messages),
            (MessageEvent, tables.message_events), (PaymentLink, tables.payment_links), (Payment, tables.payments),
            (Transaction, tables.sales), (OptOut, tables.opt_outs), (ConsentEvent, tables.consent_events),
            (EscalationTask, tables.escalation_tasks), (ArmAssignment, tables.experiment_assignments))
    written = 0
    for model, rows in plan:
        table = model.__table__
        for start in range(0, len(rows), CHUNK):
            db.session.execute(sa.insert(table), rows[start:start + CHUNK])
        written += len(rows)
    cases = RecoveryCase.__table__
    if tables.credited:
        db.session.execute(
            sa.update(cases).where(cases.c.id == sa.bindparam("b_case"))  # its own time, not now (onupdate)
            .values(recovered_message_id=sa.bindparam("b_message"), updated_at=sa.bindparam("b_updated")),
            tables.credited)
    return written
