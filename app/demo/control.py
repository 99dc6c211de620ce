"""What the demo's control page does, through the real path: a declined sale recorded by the NMI simulator, fetched,
planned and dispatched by Recoup as any failure would be; and the business clock moved forward, then a dispatch.

Nothing here writes a case or a message itself: the simulator is told over its HTTP control API (as a test in
another process would), and ingest, the planner and the dispatcher do the rest. Callable from a view, a test or
the CLI. Reading a person's input (and saying what is wrong with it) is the control page's job (admin.demo).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests
import sqlalchemy as sa

from app import clock
from app.audit import record
from app.extensions import db
from app.models import Customer, GatewayAccount, OutboxMessage, RecoveryCase, Transaction
from app.outbox.states import OutboxState
from rules.vocabulary import Channel

#: every order the control page makes starts with this (how the page finds "its" cases), and each vault record
ORDER_PREFIX = "DEMO-"
DEMO_VAULT_PREFIX = "CV-DEMO-"
#: NMI response codes a person can pick (code, what the bank said); the simulator answers with the same texts
DECLINES: tuple[tuple[str, str], ...] = (
    ("202", "Insufficient funds"),
    ("201", "Do not honor"),
    ("223", "Expired card"),
    ("203", "Over limit"),
    ("225", "Invalid card security code"),
    ("251", "Lost card"),
    ("253", "Fraudulent card"),
    ("264", "Declined, retry in a few days"),
)
#: what was sold -> (SKU, description): the built-in product rules read these as that product type
PRODUCTS: dict[str, tuple[str, str]] = {
    "subscription": ("SUB-DEMO-M", "Monthly membership"),
    "digital": ("DIG-DEMO-1", "E-book download"),
    "physical": ("SHIP-DEMO-1", "Boxed starter kit"),
    "one_time": ("ONE-DEMO-1", "Workshop ticket"),
}
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "MXN", "BRL", "JPY", "INR")
_EURO = {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT",
         "SI", "SK"}
_CURRENCY_OF = {"US": "USD", "GB": "GBP", "CA": "CAD", "AU": "AUD", "MX": "MXN", "BR": "BRL", "JP": "JPY", "IN": "INR"}
CLOCK_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class DemoError(RuntimeError):
    """The demo cannot do it (no simulator account, the simulator did not answer, ...): said in plain words."""


@dataclass(frozen=True)
class FailureRequest:
    customer_id: int | None  # an existing customer, or None for the new one described below
    name: str
    email: str
    phone: str | None  # E.164
    country: str
    amount: Decimal
    currency: str
    product_type: str
    decline_code: str


@dataclass
class FailureResult:
    case_id: int | None
    transaction_id: str
    fetched: str
    dispatched: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClockResult:
    business_now: datetime
    moved_by: timedelta
    dispatched: dict[str, Any]


# -- failing a payment ---------------------------------------------------------------------------------------------
def demo_account() -> GatewayAccount:
    account = db.session.scalar(sa.select(GatewayAccount).where(GatewayAccount.name == "nmi-demo"))
    account = account or db.session.scalar(
        sa.select(GatewayAccount).where(GatewayAccount.gateway == "nmi", GatewayAccount.enabled.is_(True))
        .order_by(GatewayAccount.id))
    if account is None or not account.api_url:
        raise DemoError("there is no NMI simulator account to fail a payment in (is the demo's world started?)")
    return account


def simulator_url(account: GatewayAccount) -> str:
    return (account.api_url or "").rstrip("/").removesuffix("/api")


def fail_payment(request: FailureRequest, *, actor: str) -> FailureResult:
    """The simulator records a declined sale; a fetch brings it in (ingest, case, plan); a dispatch sends what is
    due. Audited as ``demo.payment_failed``."""
    account = demo_account()
    sale = _record_declined_sale(simulator_url(account), request)
    fetched = _fetch(account.name)
    case = db.session.scalar(
        sa.select(RecoveryCase).join(Transaction, RecoveryCase.transaction_id == Transaction.id)
        .where(Transaction.gateway_account_id == account.id,
               Transaction.gateway_transaction_id == sale["transaction_id"]))
    if case is None:
        raise DemoError(f"the simulator declined sale {sale['transaction_id']}, but the fetch opened no case for it "
                        f"({fetched})")
    record(actor, "demo.payment_failed", "recovery_case", case.id,
           {"transaction": sale["transaction_id"], "amount": str(request.amount), "currency": request.currency,
            "decline_code": request.decline_code, "product_type": request.product_type})
    db.session.commit()
    result = FailureResult(case.id, sale["transaction_id"], fetched)
    result.dispatched = dispatch()
    return result


def _record_declined_sale(base_url: str, request: FailureRequest) -> dict[str, Any]:
    sku, description = PRODUCTS[request.product_type]
    body: dict[str, Any] = {
        "condition": "failed", "amount": str(request.amount), "currency": request.currency,
        "decline_code": request.decline_code, "order_id": f"{ORDER_PREFIX}{secrets.token_hex(4).upper()}",
        "order_description": description,
        "products": [{"sku": sku, "description": description, "amount": str(request.amount), "quantity": "1"}],
        "source": "recurring" if request.product_type == "subscription" else "api",
    }
    body.update(_simulator_customer(base_url, request))
    try:
        response = requests.post(f"{base_url}/_control/transactions", json=body, timeout=10)
    except requests.RequestException as exc:
        raise DemoError(f"the NMI simulator at {base_url} did not answer: {exc}") from None
    if response.status_code != 201:
        raise DemoError(f"the NMI simulator refused the sale: {response.status_code} {response.text[:200]}")
    return dict(response.json())


def _simulator_customer(base_url: str, request: FailureRequest) -> dict[str, Any]:
    """The customer as the simulator's vault should hold them: an existing one keeps their vault record (and card)
    when the simulator still has it; anyone else gets a fresh vault record with a card on file."""
    existing = db.session.get(Customer, request.customer_id) if request.customer_id else None
    if existing is not None and existing.vault_id and _vault_known(base_url, existing.vault_id):
        return {"customer_vault_id": existing.vault_id}
    if existing is not None:
        first, last, email, phone = existing.first_name, existing.last_name, existing.email, existing.phone_e164
        place = {"country": existing.country, "state": existing.region, "postal_code": existing.postal_code,
                 "city": existing.city}
    else:
        first, _, last = request.name.partition(" ")
        email, phone = request.email, request.phone
        place = {"country": request.country, "state": "", "postal_code": "", "city": ""}
    vault_id = existing.vault_id if existing is not None else None
    vault_id = vault_id or f"{DEMO_VAULT_PREFIX}{secrets.token_hex(4).upper()}"
    customer = {"first_name": first or "", "last_name": last or "", "email": email or "", "phone": phone or "",
                "address_1": "", "company": "", **{k: v or "" for k, v in place.items()}}
    return {"customer_vault_id": vault_id, "customer": customer}


def _vault_known(base_url: str, vault_id: str) -> bool:
    try:
        return requests.get(f"{base_url}/_control/vault/{quote(vault_id)}", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _fetch(account_name: str, attempts: int = 20) -> str:
    """One fetch of the demo account; when the periodic fetch holds the account's lock, wait for it."""
    from app.ingest.transactions import fetch_accounts

    for _ in range(attempts):
        [report] = fetch_accounts(name=account_name)
        if report.ok:
            return report.summary()
        if "another fetch" not in (report.error or ""):
            raise DemoError(f"the fetch failed: {report.summary()}")
        time.sleep(0.5)
    raise DemoError("another fetch of the demo account kept running; try again in a moment")


# -- the clock -----------------------------------------------------------------------------------------------------
def advance_clock(step: str, *, actor: str, zone: str | None = None) -> ClockResult:
    """``hour``, ``day``, ``morning`` (the next 09:00 Monday to Friday in ``zone``) or ``next`` (the next
    scheduled step of the demo's cases, else of any case); then a dispatch of what became due."""
    before = clock.business_now()
    if step in CLOCK_STEPS:
        now = clock.advance(CLOCK_STEPS[step], actor=actor)
    elif step == "morning":
        now = clock.advance_to(clock.next_business_morning(before, zone), actor=actor)
    elif step == "next":
        due = next_scheduled()
        if due is None:
            raise clock.ClockError("nothing is scheduled: fail a payment first")
        now = clock.advance_to(due, actor=actor)
    else:
        raise clock.ClockError(f"unknown clock step {step!r}")
    return ClockResult(now, now - before, dispatch())


def dispatch() -> dict[str, Any]:
    """What the periodic dispatch job does: send the messages that are due, then charge the due payment retries;
    and the dashboard counts it at once (in production the analytics job does within a minute)."""
    from app.outbox.run import dispatch_due
    from app.payments.charges import run_due_payment_retries

    report = dispatch_due()
    report["payments"] = run_due_payment_retries()
    count_for_the_dashboard()
    return report


def count_for_the_dashboard() -> None:
    from app.analytics.rollups import refresh_changed
    from app.locks import Busy

    try:
        refresh_changed()
    except Busy:  # the periodic job is counting right now
        pass


def next_scheduled() -> datetime | None:
    """When the next step still ahead on the business clock is due: of a demo case, else of any case."""
    base = sa.select(sa.func.min(OutboxMessage.scheduled_for)).where(
        OutboxMessage.state == OutboxState.SCHEDULED, OutboxMessage.scheduled_for > clock.business_now())
    mine = db.session.scalar(base.where(OutboxMessage.case_id.in_(_demo_case_ids())))
    return mine or db.session.scalar(base)


def currency_for(country: str) -> str:
    return "EUR" if country in _EURO else _CURRENCY_OF.get(country, "USD")


def _demo_case_ids() -> Any:
    return (sa.select(RecoveryCase.id).join(Transaction, RecoveryCase.transaction_id == Transaction.id)
            .where(Transaction.order_id.like(f"{ORDER_PREFIX}%")))


def demo_cases(limit: int = 8) -> list[RecoveryCase]:
    """The cases the control page opened, newest first."""
    return list(db.session.scalars(
        sa.select(RecoveryCase).where(RecoveryCase.id.in_(_demo_case_ids())).order_by(RecoveryCase.id.desc())
        .limit(limit)))


def case_messages(case_id: int) -> list[OutboxMessage]:
    return list(db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.case_id == case_id)
        .order_by(OutboxMessage.scheduled_for, OutboxMessage.id)))


def inbox_url(inboxes: dict[str, str], channel: str, address: str | None) -> str | None:
    """The sandbox inbox page where ``address`` reads what ``channel`` sent it."""
    base = inboxes.get(channel)
    if not base or not address:
        return None
    if channel == Channel.WHATSAPP:
        address = "".join(ch for ch in address if ch.isdigit())
    return f"{base.rstrip('/')}/{quote(address)}"
