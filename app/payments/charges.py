"""Getting paid: charging a case once, recovering it, and the gateway retries the policy schedules.

Charging once. Every charge of a case happens under a per-case lock (MariaDB ``GET_LOCK`` on a connection of its
own; SQLite: a process lock), with a unique ``order_id`` per attempt (``rc<case>-<attempt>``, where the attempt
key comes with the form the customer submitted: a double click, a refresh or a retried request carries the same
key and gets the same answer) and NMI's ``dup_seconds``. Inside the lock the case is read afresh: once it is
recovered, a second tab or a late click is told so instead of being charged. The attempt's ``Payment`` row is
committed *before* the gateway is called, so an attempt whose answer was lost (a timeout, a crash) is found
again and resolved with ``query_order`` before the case may be charged again; until the gateway has answered
for it, a new attempt is refused. Amounts come from the case, never from the browser.

New cards. A new card (or bank account) is charged by its single-use token and becomes the card on file only once
that charge is approved: the vault record then takes the card that paid (by its transaction), and the customer's
masked number follows. A declined new card leaves the card on file, its masked number and its decline history
alone, so the one-tap payment still offers (and charges) the card that was there.

Our own charges come back. Every charge carries its attempt's ``order_id`` (unique per attempt) and is recorded
before the gateway is called, its gateway transaction id as soon as it answers: :mod:`app.ingest.transactions` knows
these
charges by either when the Query API or a webhook reports them, and never takes them for new failed payments.

Recovery. An approved charge of the whole amount moves the case to ``recovered``, records the amount and the
message that led to it (the payment link's message: channel, variant, policy version and rule are on that row),
cancels what is still scheduled, revokes the case's links and sends a receipt by email (an outbox row, sent
at once: :mod:`app.payments.receipts`). A partial payment lowers the amount due and schedules the rest (an outbox row on
channel ``payment_due``); "pay later" schedules the whole amount the same way.

Gateway retries. :func:`run_due_payment_retries` charges due ``payment_retry`` rows (the policy's ``retry
payment`` steps) as merchant-initiated stored-credential sales, only after a soft decline, within the card's
network retry budget (``rules.retry_budget``), never after a hard or stop code; and due ``payment_due`` rows
(what the customer scheduled). No Flask request is needed anywhere here: views, jobs and the CLI call the same
functions inside an app context.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _

from app.extensions import db
from app.gateways.base import (
    ChargeOutcomeUnknown,
    ChargeResult,
    Gateway,
    GatewayAuthError,
    GatewayError,
    GatewayProtocolError,
    Initiator,
)
from app.models import Customer, GatewayAccount, MessageEvent, OutboxMessage, Payment, RecoveryCase
from app.models.types import as_utc, utcnow
from app.ops.logs import log_context
from app.ops.metrics import count_payment, provider_call
from app.outbox.states import OutboxState, sources
from app.payments.links import revoke_case_links
from app.payments.receipts import send_receipt
from app.recovery.case_lifecycle import cancel_pending
from app.recovery.cases import move_case
from rules.case_states import ACTIVE, CaseState
from rules.declines import DeclineInfo, DeclineKind, DeclineReason, classify_decline
from rules.durations import DurationError, parse_iso
from rules.retry_budget import CardRetryBudget, ChargeAttempt, RetryDecision, card_network
from rules.vocabulary import OutboxTask, Priority

log = logging.getLogger(__name__)

#: NMI refuses the same order id again within this many seconds (a resend of one request by the client)
DUP_SECONDS = 900
#: how long a request waits for another one working on the same case
LOCK_TIMEOUT_SECONDS = 20
#: an attempt whose answer was lost is "not charged" only if the gateway still has no sale this long after it
UNKNOWN_GRACE = timedelta(minutes=2)
#: failed customer attempts (declines, refused cards) per case before the page makes them wait
MAX_FAILED_ATTEMPTS = 5
FAILED_ATTEMPTS_WINDOW = timedelta(minutes=15)
DEFAULT_PAY_LATER = timedelta(days=7)
DEFAULT_PARTIAL_REST = timedelta(days=14)
#: the local hour scheduled charges and retries aim for: funds have usually landed, the customer is awake
CHARGE_HOUR = 9
ATTEMPT_KEY = re.compile(r"^[A-Za-z0-9_-]{16,40}$")
_LAST4 = re.compile(r"^\d{4}$")
_BRAND_DIGIT = {"visa": "4", "mastercard": "5", "amex": "3", "discover": "6"}


class PayMethod(StrEnum):
    """How the customer pays (stored as ``Payment.method``)."""

    card_on_file = "vault"
    new_card = "new_card"
    ach = "ach"
    partial = "partial"


#: ways of paying with a new card or bank account (a single-use token), not the card on file
NEW_METHODS = (PayMethod.new_card.value, PayMethod.ach.value)


# -- errors ------------------------------------------------------------------------------------------------------
class PaymentError(Exception):
    """The request cannot be carried out as asked. ``code`` is for the view; ``str()`` is for logs."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class CaseBusy(PaymentError):
    def __init__(self) -> None:
        super().__init__("busy", "another request is working on this case")


class RateLimited(PaymentError):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("rate_limited", f"too many failed attempts; wait {retry_after}")
        self.retry_after = retry_after


# -- values ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PayRequest:
    case_id: int
    method: PayMethod
    attempt: str  # the attempt key the page handed out: same key, same attempt
    payment_token: str | None = None  # single-use Collect.js token (new card, bank account)
    link_id: int | None = None
    message_id: int | None = None  # the message whose link was used (attribution)
    ip_address: str | None = None
    card_last4: str | None = None  # display only, from the tokenizer's answer
    card_brand: str | None = None


@dataclass(frozen=True)
class PayOutcome:
    """``status``: approved | declined | error | pending (the gateway's answer is not known yet) |
    already_paid | closed | scheduled."""

    status: str
    case_id: int
    amount_minor: int
    currency: str
    payment_id: int | None = None
    order_id: str | None = None
    decline: DeclineInfo | None = None
    remaining_minor: int = 0
    scheduled_for: datetime | None = None
    scheduled_id: int | None = None
    method: str | None = None

    @property
    def paid(self) -> bool:
        return self.status in ("approved", "already_paid")


@dataclass(frozen=True)
class PaymentOptions:
    """What the payment page may offer for one case, from its decline and its policy's offers."""

    amount_due_minor: int
    currency: str
    decline: DeclineInfo
    offers: tuple[str, ...]
    card_on_file: str | None  # masked, e.g. "4xxxxxxxxxxx1111"
    card_on_file_usable: bool
    new_card: bool
    ach: bool
    partial_minor: int | None  # pay this much now...
    partial_rest_on: date | None  # ...and the rest on this (local) date
    pay_later_until: date | None  # latest (local) date the customer may pick
    scheduled: OutboxMessage | None  # a payment already scheduled for this case
    timezone: str
    today: date


# -- the per-case lock -------------------------------------------------------------------------------------------
class _ProcessLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()


_process_locks: weakref.WeakValueDictionary[str, _ProcessLock] = weakref.WeakValueDictionary()
_process_locks_guard = threading.Lock()


@contextmanager
def case_lock(case_id: int, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Only one charge-or-schedule of ``case_id`` at a time, across threads, processes and hosts (MariaDB).

    On MariaDB the lock is ``GET_LOCK`` on a connection of its own, outside the session's pool: waiting
    requests hold no pooled connection, the lock survives the commits made while it is held, and a process
    that dies releases it with its connection. On SQLite (one process: the embedded default) it is a lock
    in this process. Raises :class:`CaseBusy` after ``timeout`` seconds.
    """
    engine = db.engine
    if engine.dialect.name == "mysql":
        lock_engine = _lock_engine()
        name = f"recoup:{engine.url.database}:pay:{case_id}"[-64:]
        with lock_engine.connect() as conn:
            got = conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": timeout}).scalar()
            if got != 1:
                raise CaseBusy()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        return
    key = f"{engine.url}:{case_id}"
    with _process_locks_guard:
        holder = _process_locks.get(key)
        if holder is None:
            holder = _process_locks[key] = _ProcessLock()
    if not holder.lock.acquire(timeout=timeout):
        raise CaseBusy()
    try:
        yield
    finally:
        holder.lock.release()


def _lock_engine() -> sa.Engine:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    engine: sa.Engine | None = app.extensions.get("recoup.lock_engine")
    if engine is None:
        connect_args = (app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}).get("connect_args", {})
        engine = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool, connect_args=connect_args)
        app.extensions["recoup.lock_engine"] = engine
    return engine


# -- what the page offers ----------------------------------------------------------------------------------------
def payment_options(case: RecoveryCase, now: datetime | None = None) -> PaymentOptions:
    now = now or utcnow()
    customer = case.customer
    zone = customer_zone(customer, case)
    today = now.astimezone(zone).date()
    plan = case.plan or {}
    offers = tuple(str(o) for o in (plan.get("offers") or []))
    terms = plan.get("offer_terms") or {}
    decline = latest_decline(case)
    vault = customer.vault_id if customer is not None else None
    usable = bool(vault) and decline.kind is DeclineKind.soft
    partial_paid = db.session.scalar(sa.select(sa.func.count(Payment.id)).where(
        Payment.case_id == case.id, Payment.method == PayMethod.partial.value, Payment.state == "approved")) or 0
    partial_minor = None
    rest_on = None
    if "partial_payment" in offers and usable and not partial_paid and case.amount_due_minor >= 2:
        partial_minor = math.ceil(case.amount_due_minor / 2)
        rest_on = partial_rest_date(case, today)
    pay_later_until = None
    if "pay_later" in offers and usable:
        pay_later_until = today + timedelta(days=max(1, (_duration(terms.get("pay_later")) or DEFAULT_PAY_LATER).days))
    scheduled = db.session.scalar(sa.select(OutboxMessage).where(
        OutboxMessage.case_id == case.id, OutboxMessage.channel == OutboxTask.PAYMENT_DUE,
        OutboxMessage.state == OutboxState.SCHEDULED).order_by(OutboxMessage.scheduled_for).limit(1))
    return PaymentOptions(
        amount_due_minor=case.amount_due_minor, currency=case.currency, decline=decline, offers=offers,
        card_on_file=customer.card_masked if customer is not None and vault else None,
        card_on_file_usable=usable, new_card=bool(vault),
        ach=bool(vault) and bool({"bank_transfer", "alternative_payment"} & set(offers)),
        partial_minor=partial_minor, partial_rest_on=rest_on, pay_later_until=pay_later_until,
        scheduled=scheduled, timezone=zone.key, today=today,
    )


def partial_rest_date(case: RecoveryCase, today: date) -> date:
    """When the rest of a part payment is charged: the policy's payment-plan (or pay-later) term from today."""
    terms = (case.plan or {}).get("offer_terms") or {}
    rest = _duration(terms.get("payment_plan")) or _duration(terms.get("pay_later")) or DEFAULT_PARTIAL_REST
    return today + timedelta(days=max(1, rest.days))


def latest_decline(case: RecoveryCase) -> DeclineInfo:
    """Why the card on file last failed: the latest declined charge of it (on the page or by a retry), else the
    original failure. A new card or bank account that was declined says nothing about the card on file (it never
    replaced it); an approved one did replace it, and only later charges count."""
    last = db.session.scalar(sa.select(Payment).where(
        Payment.case_id == case.id, Payment.state.in_(("declined", "approved")),
        ~sa.and_(Payment.method.in_(NEW_METHODS), Payment.state == "declined"),
    ).order_by(Payment.id.desc()).limit(1))
    if last is not None and last.state == "declined":
        return classify_decline(last.response_code, (last.raw or {}).get("merchant_advice_code"),
                                gateway=case.transaction.gateway, text=last.response_text)
    tx = case.transaction
    return classify_decline(tx.decline_code, tx.merchant_advice_code, gateway=tx.gateway, text=tx.decline_text)


def customer_zone(customer: Customer | None, case: RecoveryCase | None = None) -> ZoneInfo:
    for name in (customer.timezone_explicit if customer else None, customer.timezone if customer else None,
                 (case.plan or {}).get("timezone") if case is not None else None):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _duration(text: Any) -> timedelta | None:
    """An offer's term as the plan stores it (ISO 8601: ``P7D``, ``P2W``); None when missing or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_iso(text)
    except DurationError:
        return None


# -- paying ------------------------------------------------------------------------------------------------------
def order_id_for(case_id: int, attempt: str) -> str:
    return f"rc{case_id}-{attempt}"


def pay_case(request: PayRequest, *, now: datetime | None = None) -> PayOutcome:
    """Charge the case as the customer asked, once. Safe to call again with the same ``request.attempt``."""
    if not ATTEMPT_KEY.match(request.attempt or ""):
        raise PaymentError("bad_attempt", "the attempt key is missing or malformed")
    method = PayMethod(request.method)
    if method in (PayMethod.new_card, PayMethod.ach) and not (request.payment_token or "").strip():
        raise PaymentError("no_token", "a new card or bank account needs a payment token")
    # End whatever the caller read: everything below is read after the lock is taken, so it is current.
    db.session.rollback()
    with log_context(case_id=request.case_id), case_lock(request.case_id):
        try:
            return _pay_locked(request, method, now or utcnow())
        finally:
            db.session.rollback()  # nothing half-done leaves the lock


def _pay_locked(request: PayRequest, method: PayMethod, now: datetime) -> PayOutcome:
    case = db.session.get(RecoveryCase, request.case_id, populate_existing=True)
    if case is None:
        raise PaymentError("no_case")
    order_id = order_id_for(case.id, request.attempt)
    existing = db.session.scalar(sa.select(Payment).where(Payment.order_id == order_id))
    if existing is not None:  # the same attempt again: its answer, never a second charge
        if existing.case_id != case.id:
            raise PaymentError("bad_attempt")
        if existing.state in ("pending", "unknown"):
            _resolve(existing, case, now)
        return _outcome(existing, case)
    settled = _settled_outcome(case)
    if settled is not None:
        return settled
    for earlier in _unresolved(case.id):
        _resolve(earlier, case, now)
        if earlier.state == "approved":
            return _settled_outcome(case) or _outcome(earlier, case)
        if earlier.state in ("pending", "unknown"):
            return _outcome(earlier, case)  # an earlier charge may have gone through: no second one yet
    blocked = failed_attempts_wait(case.id, now)
    if blocked is not None:
        raise RateLimited(blocked)
    amount = _amount_for(case, method, now)
    payment = Payment(case_id=case.id, link_id=request.link_id, message_id=request.message_id, order_id=order_id,
                      method=method.value, initiator="customer", amount_minor=amount, currency=case.currency,
                      state="pending", created_at=now, card_masked=_new_method_mask(request))
    db.session.add(payment)
    db.session.commit()  # durable before any money moves: a lost answer is found again by this order id
    try:
        result = _charge_attempt(gateway_for_case(case), payment, case, request)
    except (ChargeOutcomeUnknown, GatewayProtocolError) as exc:
        log.warning("payment %s: outcome unknown (%s); asking the gateway", order_id, exc)
        payment.state = "unknown"
        payment.response_text = str(exc)[:255]
        db.session.commit()
        count_payment(payment.initiator, payment.method, "unknown")
        _resolve(payment, case, now)
        return _outcome(payment, case)
    except GatewayError as exc:  # unavailable / refused credentials: the client made sure nothing was charged
        log.error("payment %s: gateway error %s", order_id, exc)
        _finish(payment, "error", now, text=str(exc))
        return _outcome(payment, case)
    _apply_result(payment, result, case, now)
    return _outcome(payment, case)


def _amount_for(case: RecoveryCase, method: PayMethod, now: datetime) -> int:
    """What this way of paying charges now, if the case offers it (else :class:`PaymentError`)."""
    options = payment_options(case, now)
    customer = case.customer
    if not (customer.vault_id if customer is not None else None):
        raise PaymentError("no_vault", "no stored payment method to charge for this customer")
    if method is PayMethod.card_on_file and not options.card_on_file_usable:
        raise PaymentError("not_offered", "the card on file cannot be charged after this decline")
    if method is PayMethod.ach and not options.ach:
        raise PaymentError("not_offered", "bank payment is not offered for this case")
    if method is PayMethod.partial:
        if options.partial_minor is None:
            raise PaymentError("not_offered", "partial payment is not offered for this case")
        return options.partial_minor
    return case.amount_due_minor


def _charge_attempt(gateway: Gateway, payment: Payment, case: RecoveryCase, request: PayRequest) -> ChargeResult:
    """One customer charge: the card on file from the vault, or a new card (bank account) by its single-use
    token, which leaves the vault alone: it becomes the card on file only once approved (:func:`_apply_result`)."""
    description = _description(case)
    if payment.method in NEW_METHODS:
        return _charge_token(gateway, (request.payment_token or "").strip(), payment.amount_minor, case.currency,
                             order_id=payment.order_id, order_description=description, ip_address=request.ip_address)
    vault = case.customer.vault_id if case.customer is not None else None
    assert vault is not None  # checked by _amount_for
    return _charge_vault(gateway, vault, payment.amount_minor, case.currency, order_id=payment.order_id,
                         initiator="customer", order_description=description, ip_address=request.ip_address)


def _new_method_mask(request: PayRequest) -> str | None:
    """How the page names a new card or bank account (from the tokenizer's last four digits and brand)."""
    if request.method not in NEW_METHODS:
        return None
    last4 = request.card_last4 if request.card_last4 and _LAST4.match(request.card_last4) else None
    if request.method == PayMethod.ach:
        return f"ach-xxxx{last4}" if last4 else "ach"
    if not last4:
        return None
    return f"{_BRAND_DIGIT.get((request.card_brand or '').lower(), 'x')}{'x' * 11}{last4}"


def _adopt_new_method(payment: Payment, case: RecoveryCase) -> None:
    """An approved new card or bank account becomes the card on file: the vault record takes the card that
    paid (by its transaction), then the customer's masked number follows. A declined one never gets here."""
    customer = case.customer
    vault = customer.vault_id if customer is not None else None
    if customer is None or not vault or not payment.gateway_transaction_id:
        return
    try:
        stored = gateway_for_case(case).store_vault_card_from(vault, payment.gateway_transaction_id)
        why = "" if stored.approved else f"{stored.response_code} {stored.response_text}"
    except GatewayError as exc:
        why = str(exc)
    if why:
        log.warning("payment %s was approved but the vault kept its card: %s", payment.order_id, why)
        payment.raw = {**(payment.raw or {}), "vault_update": f"failed: {why}"[:200]}
    else:
        customer.card_masked = payment.card_masked
        customer.card_expiry = None
    db.session.commit()


def _apply_result(payment: Payment, result: ChargeResult, case: RecoveryCase, now: datetime) -> None:
    payment.gateway_transaction_id = result.transaction_id
    payment.response_code = result.response_code
    payment.response_text = (result.response_text or "")[:255] or None
    payment.raw = {k: v for k, v in dict(result.raw).items() if k in _RAW_KEEP}
    payment.completed_at = now
    if result.approved:
        payment.state = "approved"
        finished = _record_recovery(case, payment, now)
        db.session.commit()
        count_payment(payment.initiator, payment.method, "approved")
        if payment.method in NEW_METHODS:
            _adopt_new_method(payment, case)
        _book_sale(payment.id)
        if finished:
            send_receipt(payment.id)
        return
    payment.state = "declined" if result.status.value == "declined" else "error"
    db.session.commit()
    count_payment(payment.initiator, payment.method, payment.state)


def _book_sale(payment_id: int) -> None:
    """The approved charge is the customer's sale at once (the sales fetch then finds it booked). The money has
    moved and is recorded: a failure here is logged, never turned into an error for the customer."""
    from app.ingest.transactions import record_recovered_payment

    try:
        record_recovered_payment(payment_id)
    except Exception:
        db.session.rollback()
        log.exception("payment %s: could not book it as the customer's sale; the next sales fetch will", payment_id)


#: what of the gateway's answer is kept on the payment (never card data; NMI sends none, but be explicit)
_RAW_KEEP = frozenset({"response", "responsetext", "authcode", "transactionid", "avsresponse", "cvvresponse",
                       "orderid", "type", "response_code", "merchant_advice_code", "cof_supported",
                       "condition", "transaction_id", "order_id", "authorization_code"})


def _finish(payment: Payment, state: str, now: datetime, *, code: str | None = None, text: str | None = None) -> None:
    payment.state = state
    payment.response_code = code
    payment.response_text = (text or "")[:255] or None
    payment.completed_at = now
    db.session.commit()
    count_payment(payment.initiator, payment.method, state)


def _record_recovery(case: RecoveryCase, payment: Payment, now: datetime) -> bool:
    """Book an approved payment on its case. True when the case is now fully paid (recovered)."""
    case.recovered_amount_minor = (case.recovered_amount_minor or 0) + payment.amount_minor
    if payment.message_id is not None and case.recovered_message_id is None:
        case.recovered_message_id = payment.message_id
    remaining = case.amount_due_minor - payment.amount_minor
    actor = "customer" if payment.initiator == "customer" else "payment-retry"
    if remaining > 0:
        case.amount_due_minor = remaining
        cancel_pending(case.id, "part paid; the rest is scheduled")
        rest_on = partial_rest_date(case, now.astimezone(customer_zone(case.customer, case)).date())
        _schedule_due(case, rest_on, key=f"rest:{payment.order_id}", now=now)
        return False
    if case.state in ACTIVE:
        move_case(case, CaseState.RECOVERED, reason=f"paid: order {payment.order_id} ({payment.method})", actor=actor,
                  at=now)
    cancel_pending(case.id, "case recovered")
    revoke_case_links(case.id, now=now)
    return True


def _settled_outcome(case: RecoveryCase) -> PayOutcome | None:
    if case.state in ACTIVE:
        return None
    if case.state == CaseState.RECOVERED:
        paid = db.session.scalar(sa.select(Payment).where(Payment.case_id == case.id, Payment.state == "approved")
                                 .order_by(Payment.id.desc()).limit(1))
        return PayOutcome("already_paid", case.id, paid.amount_minor if paid else (case.recovered_amount_minor or 0),
                          case.currency, payment_id=paid.id if paid else None,
                          order_id=paid.order_id if paid else None)
    return PayOutcome("closed", case.id, case.amount_due_minor, case.currency)


def _outcome(payment: Payment, case: RecoveryCase) -> PayOutcome:
    decline = None
    if payment.state in ("declined", "error"):
        decline = classify_decline(payment.response_code, (payment.raw or {}).get("merchant_advice_code"),
                                   gateway=case.transaction.gateway, text=payment.response_text)
    due = None
    if payment.state == "approved" and case.state in ACTIVE:
        due = db.session.scalar(sa.select(OutboxMessage).where(
            OutboxMessage.case_id == case.id, OutboxMessage.channel == OutboxTask.PAYMENT_DUE,
            OutboxMessage.state == OutboxState.SCHEDULED).order_by(OutboxMessage.scheduled_for).limit(1))
    return PayOutcome(
        payment.state, case.id, payment.amount_minor, payment.currency, payment_id=payment.id,
        order_id=payment.order_id, decline=decline,
        remaining_minor=case.amount_due_minor if payment.state == "approved" and case.state in ACTIVE else 0,
        scheduled_for=due.scheduled_for if due else None, scheduled_id=due.id if due else None,
        method=payment.method,
    )


def payment_outcome(payment_id: int, *, now: datetime | None = None, resolve: bool = True) -> PayOutcome | None:
    """The outcome of one attempt, for its result page; an attempt still unanswered is looked up first."""
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        return None
    case = db.session.get(RecoveryCase, payment.case_id)
    if case is None:
        return None
    if resolve and payment.state in ("pending", "unknown"):
        resolve_payment(payment.id, now=now)
        again = db.session.get(Payment, payment_id, populate_existing=True)
        case = db.session.get(RecoveryCase, case.id, populate_existing=True)
        if again is None or case is None:
            return None
        payment = again
    return _outcome(payment, case)


def _unresolved(case_id: int) -> list[Payment]:
    return list(db.session.scalars(sa.select(Payment).where(
        Payment.case_id == case_id, Payment.state.in_(("pending", "unknown"))).order_by(Payment.id)))


def resolve_payment(payment_id: int, *, now: datetime | None = None) -> str:
    """Ask the gateway what became of an attempt whose answer was lost. Returns its state afterwards."""
    now = now or utcnow()
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        return "gone"
    if payment.state not in ("pending", "unknown"):
        return payment.state
    case_id = payment.case_id
    db.session.rollback()
    try:
        with case_lock(case_id, timeout=5):
            payment = db.session.get(Payment, payment_id, populate_existing=True)
            case = db.session.get(RecoveryCase, case_id, populate_existing=True)
            if payment is None or case is None:
                return "gone"
            if payment.state in ("pending", "unknown"):
                _resolve(payment, case, now)
            return payment.state
    except CaseBusy:
        return "busy"


def _resolve(payment: Payment, case: RecoveryCase, now: datetime) -> None:
    """Under the case lock: look the order up at the gateway and book what it says."""
    try:
        found = gateway_for_case(case).query_order(payment.order_id)
    except GatewayError as exc:
        log.warning("payment %s: order look-up failed: %s", payment.order_id, exc)
        if payment.state == "pending":
            payment.state = "unknown"
            db.session.commit()
        return
    if found is not None:
        log.info("payment %s resolved by the gateway: %s", payment.order_id, found.status.value)
        _apply_result(payment, found, case, now)
        return
    created = payment.created_at if payment.created_at.tzinfo else payment.created_at.replace(tzinfo=UTC)
    if now - created >= UNKNOWN_GRACE or utcnow() - created >= UNKNOWN_GRACE:
        # long enough that a request still in flight would have been recorded: it never reached the gateway
        _finish(payment, "error", now, text="the gateway has no record of this attempt; nothing was charged")
    elif payment.state == "pending":
        payment.state = "unknown"
        db.session.commit()


def failed_attempts_wait(case_id: int, now: datetime | None = None) -> timedelta | None:
    """How long the customer must wait before trying again, when recent attempts kept failing; else None."""
    now = now or utcnow()
    since = now - FAILED_ATTEMPTS_WINDOW
    times = sorted(db.session.scalars(sa.select(Payment.created_at).where(
        Payment.case_id == case_id, Payment.initiator == "customer", Payment.state.in_(("declined", "error")),
        Payment.created_at > since)))
    if len(times) < MAX_FAILED_ATTEMPTS:
        return None
    release = times[len(times) - MAX_FAILED_ATTEMPTS] + FAILED_ATTEMPTS_WINDOW
    return max(timedelta(seconds=1), release - now)


# -- paying later ------------------------------------------------------------------------------------------------
def schedule_payment(case_id: int, pay_on: date, *, attempt: str, link_id: int | None = None,
                     message_id: int | None = None, now: datetime | None = None) -> PayOutcome:
    """The customer picks a date (within the policy's ``pay_later`` term) to be charged the amount due."""
    now = now or utcnow()
    if not ATTEMPT_KEY.match(attempt or ""):
        raise PaymentError("bad_attempt", "the attempt key is missing or malformed")
    db.session.rollback()
    with case_lock(case_id):
        try:
            case = db.session.get(RecoveryCase, case_id, populate_existing=True)
            if case is None:
                raise PaymentError("no_case")
            key = f"case:{case.id}:due:later:{attempt}"
            same = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
            if same is not None:
                return PayOutcome("scheduled", case.id, case.amount_due_minor, case.currency,
                                  scheduled_for=same.scheduled_for, scheduled_id=same.id)
            settled = _settled_outcome(case)
            if settled is not None:
                return settled
            options = payment_options(case, now)
            if options.pay_later_until is None:
                raise PaymentError("not_offered", "paying later is not offered for this case")
            if not options.today <= pay_on <= options.pay_later_until:
                raise PaymentError("bad_date", f"pick a date from {options.today} to {options.pay_later_until}")
            cancel_pending(case.id, "the customer chose to pay later")
            row = _schedule_due(case, pay_on, key=f"later:{attempt}", now=now, link_id=link_id,
                                message_id=message_id)
            db.session.commit()
            return PayOutcome("scheduled", case.id, case.amount_due_minor, case.currency,
                              scheduled_for=row.scheduled_for, scheduled_id=row.id)
        finally:
            db.session.rollback()


def _schedule_due(case: RecoveryCase, on: date, *, key: str, now: datetime, link_id: int | None = None,
                  message_id: int | None = None) -> OutboxMessage:
    zone = customer_zone(case.customer, case)
    at = datetime.combine(on, time(CHARGE_HOUR), tzinfo=zone).astimezone(UTC)
    at = max(at, now)
    row = OutboxMessage(
        case_id=case.id, customer_id=case.customer_id, step_n=None, channel=OutboxTask.PAYMENT_DUE.value, fallbacks=[],
        address=None, template=None, priority=Priority.of(case.priority).value, state=OutboxState.SCHEDULED,
        scheduled_for=at,
        deferred_by=[], policy_version_id=case.policy_version_id, rule_line=None,
        idempotency_key=f"case:{case.id}:due:{key}"[:191],
    )
    db.session.add(row)
    db.session.flush()
    db.session.add(MessageEvent(message_id=row.id, kind="scheduled", provider_payload={
        "by": "customer", "on": on.isoformat(), "link": link_id, "message": message_id}))
    # the case must still be open on the day: move its give-up time past it
    if case.give_up_at is not None:
        give_up = case.give_up_at if case.give_up_at.tzinfo else case.give_up_at.replace(tzinfo=UTC)
        if give_up < at + timedelta(days=3):
            case.give_up_at = at + timedelta(days=3)
    return row


# -- gateway retries and scheduled charges -----------------------------------------------------------------------
def run_due_payment_retries(now: datetime | None = None, limit: int = 100) -> dict[str, int]:
    """Charge due ``payment_retry`` (policy) and ``payment_due`` (customer-scheduled) rows; resolve lost answers.

    For the dispatcher's periodic job. Each row is claimed with a conditional update, so two workers never
    charge it both; the charge itself runs under the case lock like every other charge of the case. What is due
    is read on the business clock (app.clock: the demo may move it); claims and charges happen in real time.
    """
    from app.clock import business_now

    due_by = now or business_now()
    now = now or utcnow()
    report: dict[str, int] = {}

    def count(outcome: str) -> None:
        report[outcome] = report.get(outcome, 0) + 1

    stale = db.session.scalars(sa.select(Payment.id).where(
        Payment.state.in_(("pending", "unknown")), Payment.created_at <= now - UNKNOWN_GRACE).limit(limit)).all()
    for payment_id in stale:
        count(f"resolved_{resolve_payment(payment_id, now=now)}")
    rows = db.session.scalars(sa.select(OutboxMessage.id).where(
        OutboxMessage.channel.in_((OutboxTask.PAYMENT_RETRY, OutboxTask.PAYMENT_DUE)),
        OutboxMessage.state == OutboxState.SCHEDULED,
        OutboxMessage.scheduled_for <= due_by).order_by(OutboxMessage.scheduled_for).limit(limit)).all()
    db.session.rollback()
    for row_id in rows:
        claimed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == row_id,
                   OutboxMessage.state.in_(sources(OutboxState.CLAIMED, among={OutboxState.SCHEDULED})))
            .values(state=OutboxState.CLAIMED, claimed_at=now, claimed_by="payment-retries")
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if not claimed:
            continue
        try:
            with log_context(message_id=row_id):
                count(_run_due_row(row_id, now))
        except CaseBusy:
            db.session.rollback()
            _release_row(row_id, now + timedelta(minutes=5), "case busy")
            count("busy")
        except Exception:
            log.exception("payment retry row %s failed unexpectedly", row_id)
            db.session.rollback()
            row = db.session.get(OutboxMessage, row_id)
            if row is not None and row.state == OutboxState.CLAIMED:
                _finish_row(row, OutboxState.FAILED, {"error": "internal error"})
            count("error")
    return report


def _run_due_row(row_id: int, now: datetime) -> str:
    row = db.session.get(OutboxMessage, row_id)
    if row is None or row.case_id is None:
        return "gone"
    case_id = row.case_id
    db.session.rollback()
    with case_lock(case_id):
        row = db.session.get(OutboxMessage, row_id, populate_existing=True)
        case = db.session.get(RecoveryCase, case_id, populate_existing=True)
        assert row is not None
        if case is None or case.state not in ACTIVE:
            _finish_row(row, OutboxState.CANCELLED, {"why": f"case is {case.state if case else 'gone'}"})
            return "cancelled"
        customer = case.customer
        vault = customer.vault_id if customer is not None else None
        if not vault:
            _finish_row(row, OutboxState.SKIPPED, {"why": "no stored payment method"})
            return "skipped"
        for earlier in _unresolved(case.id):
            _resolve(earlier, case, now)
            if earlier.state in ("pending", "unknown"):
                _release_row(row, now + UNKNOWN_GRACE, f"order {earlier.order_id} not resolved yet")
                return "waiting"
        if case.state not in ACTIVE:
            _finish_row(row, OutboxState.CANCELLED, {"why": f"case is {case.state}"})
            return "cancelled"
        scheduled_by_customer = row.channel == OutboxTask.PAYMENT_DUE
        if not scheduled_by_customer:
            decline = latest_decline(case)
            if decline.kind is not DeclineKind.soft:
                why = f"{decline.kind.value} decline ({decline.code}): not retried"
                _finish_row(row, OutboxState.CANCELLED, {"why": why})
                return "not_soft"
        decision = card_budget(case, consent_at=row.created_at if scheduled_by_customer else None).decide(now)
        if not decision.allowed:
            return _budget_refused(row, case, decision)
        order_id = f"rc{case.id}-{'d' if scheduled_by_customer else 'r'}{row.id}"
        payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == order_id))
        if payment is None:
            payment = Payment(case_id=case.id, message_id=row.id, order_id=order_id,
                              method="scheduled" if scheduled_by_customer else "retry", initiator="merchant",
                              amount_minor=case.amount_due_minor, currency=case.currency, state="pending",
                              created_at=now)
            db.session.add(payment)
            row.state = OutboxState.SENDING
            row.attempts += 1
            db.session.commit()
            try:
                result = _charge_vault(
                    gateway_for_case(case), vault, payment.amount_minor, case.currency, order_id=order_id,
                    initiator="merchant", order_description=_description(case),
                    initial_transaction_id=_initial_transaction(case))
            except (ChargeOutcomeUnknown, GatewayProtocolError) as exc:
                payment.state = "unknown"
                payment.response_text = str(exc)[:255]
                _finish_row(row, OutboxState.UNKNOWN, {"order_id": order_id, "error": str(exc)[:200]})
                count_payment(payment.initiator, payment.method, "unknown")
                return "unknown"
            except GatewayAuthError as exc:
                _finish(payment, "error", now, text=str(exc))
                _finish_row(row, OutboxState.FAILED, {"order_id": order_id, "error": str(exc)[:200]})
                return "error"
            except GatewayError as exc:  # nothing was charged; try again a little later
                _finish(payment, "error", now, text=str(exc))
                _release_row(row, now + timedelta(minutes=30), f"gateway unavailable: {exc}"[:200])
                return "gateway_unavailable"
            _apply_result(payment, result, case, now)
        elif payment.state in ("pending", "unknown"):
            _resolve(payment, case, now)
        payload = {"order_id": order_id, "payment": payment.id, "state": payment.state,
                   "response_code": payment.response_code}
        if payment.state == "approved":
            _finish_row(row, OutboxState.SENT, payload)
            return "approved"
        _finish_row(row, OutboxState.FAILED if payment.state in ("declined", "error") else OutboxState.UNKNOWN,
                payload)
        return payment.state


def _budget_refused(row: OutboxMessage, case: RecoveryCase, decision: RetryDecision) -> str:
    if decision.next_allowed_at is not None:
        later = good_charge_time(decision.next_allowed_at, customer_zone(case.customer, case))
        _release_row(row, later, f"retry budget: {decision.reason}")
        return "deferred"
    _finish_row(row, OutboxState.CANCELLED, {"why": f"retry budget: {decision.reason}"})
    return "stopped"


def card_budget(case: RecoveryCase, *, consent_at: datetime | None = None) -> CardRetryBudget:
    """The network retry ledger of the customer's stored card: the original failure and every charge of it
    since, across the customer's cases. A new card (or bank account) approved on the page, or a charge the
    customer scheduled (``consent_at``), is a fresh authorization: only what came after it counts. A new card
    that was declined is another card: not in this card's ledger."""
    tx = case.transaction
    raw = tx.raw or {}
    network = card_network(str(raw.get("cc_type") or "") or None,
                           str(raw.get("cc_bin") or "") or (case.customer.card_masked if case.customer else None))
    payments = list(db.session.scalars(
        sa.select(Payment).join(RecoveryCase, RecoveryCase.id == Payment.case_id)
        .where(RecoveryCase.customer_id == case.customer_id, Payment.state.in_(("approved", "declined")))
        .order_by(Payment.created_at)) if case.customer_id is not None else [])
    payments = [p for p in payments if not (p.method in NEW_METHODS and p.state == "declined")]
    fresh_from = consent_at
    for p in payments:
        if p.method in NEW_METHODS:
            created = as_utc(p.created_at)
            fresh_from = created if fresh_from is None or created > fresh_from else fresh_from
    budget = CardRetryBudget(network)
    if fresh_from is None:
        budget = budget.record(ChargeAttempt(at=as_utc(tx.failed_at), approved=False, code=tx.decline_code,
                                             merchant_advice_code=tx.merchant_advice_code, retry=False))
    for p in payments:
        at = as_utc(p.created_at)
        if fresh_from is not None and at < fresh_from:
            continue
        budget = budget.record(ChargeAttempt(at=at, approved=p.state == "approved", code=p.response_code,
                                             merchant_advice_code=(p.raw or {}).get("merchant_advice_code"),
                                             retry=p.initiator == "merchant"))
    return budget


def good_charge_time(after: datetime, zone: ZoneInfo, *, paydays: bool = True) -> datetime:
    """The first local morning (``CHARGE_HOUR``) at or after ``after``; when a common payday (the 1st or the
    15th) comes within the next three days, that morning instead: that is when funds arrive."""
    local = after.astimezone(zone)
    day = local.date() if local.time() <= time(CHARGE_HOUR) else local.date() + timedelta(days=1)
    if paydays:
        for ahead in range(4):
            candidate = day + timedelta(days=ahead)
            if candidate.day in (1, 15):
                day = candidate
                break
    return datetime.combine(day, time(CHARGE_HOUR), tzinfo=zone).astimezone(UTC)


def _initial_transaction(case: RecoveryCase) -> str:
    """The transaction that set up the stored credential. NMI wants it on merchant-initiated charges; the
    latest approved customer charge of this customer is the best we know, else the case's original sale."""
    latest = db.session.scalar(
        sa.select(Payment.gateway_transaction_id).join(RecoveryCase, RecoveryCase.id == Payment.case_id)
        .where(RecoveryCase.customer_id == case.customer_id, Payment.state == "approved",
               Payment.initiator == "customer", Payment.gateway_transaction_id.is_not(None))
        .order_by(Payment.id.desc()).limit(1)) if case.customer_id is not None else None
    return latest or case.transaction.gateway_transaction_id


def _release_row(row_or_id: OutboxMessage | int, at: datetime, why: str) -> None:
    row = row_or_id if isinstance(row_or_id, OutboxMessage) else db.session.get(OutboxMessage, row_or_id)
    if row is None:
        return
    row.state = OutboxState.SCHEDULED
    row.claimed_by = None
    row.scheduled_for = at
    db.session.add(MessageEvent(message_id=row.id, kind="deferred", provider_payload={"until": at.isoformat(),
                                                                                       "why": why}))
    db.session.commit()


def _finish_row(row: OutboxMessage, state: OutboxState, payload: dict[str, Any]) -> None:
    row.state = state
    if state == OutboxState.SENT:
        row.sent_at = utcnow()
    db.session.add(MessageEvent(message_id=row.id, kind=state, provider_payload=payload))
    db.session.commit()


# -- helpers -----------------------------------------------------------------------------------------------------
def gateway_for_case(case: RecoveryCase) -> Gateway:
    from app.accounts.gateway_accounts import gateway_for

    account = db.session.get(GatewayAccount, case.transaction.gateway_account_id)
    if account is None:
        raise PaymentError("no_gateway", f"case {case.id} has no gateway account")
    return gateway_for(account)


def _charge_vault(gateway: Gateway, vault: str, amount_minor: int, currency: str, *, order_id: str,
                  initiator: Initiator, order_description: str | None,
                  initial_transaction_id: str | None = None, ip_address: str | None = None) -> ChargeResult:
    """``Gateway.charge_vault``, with NMI's duplicate window (and the payer's address) when the gateway is NMI."""
    with provider_call(_provider(gateway), "charge_vault"):
        return _charge_vault_call(gateway, vault, amount_minor, currency, order_id=order_id, initiator=initiator,
                                  order_description=order_description,
                                  initial_transaction_id=initial_transaction_id, ip_address=ip_address)


def _charge_vault_call(gateway: Gateway, vault: str, amount_minor: int, currency: str, *, order_id: str,
                       initiator: Initiator, order_description: str | None,
                       initial_transaction_id: str | None, ip_address: str | None) -> ChargeResult:
    from app.gateways.nmi import NmiGateway

    if isinstance(gateway, NmiGateway):
        return gateway.charge_vault(vault, amount_minor, currency, order_id=order_id, initiator=initiator,
                                    order_description=order_description,
                                    initial_transaction_id=initial_transaction_id, dup_seconds=DUP_SECONDS,
                                    ip_address=ip_address)
    return gateway.charge_vault(vault, amount_minor, currency, order_id=order_id, initiator=initiator,
                                order_description=order_description, initial_transaction_id=initial_transaction_id)


def _charge_token(gateway: Gateway, token: str, amount_minor: int, currency: str, *, order_id: str,
                  order_description: str | None, ip_address: str | None = None) -> ChargeResult:
    """``Gateway.charge_token``, with NMI's duplicate window (and the payer's address) when the gateway is NMI."""
    from app.gateways.nmi import NmiGateway

    with provider_call(_provider(gateway), "charge_token"):
        if isinstance(gateway, NmiGateway):
            return gateway.charge_token(token, amount_minor, currency, order_id=order_id,
                                        order_description=order_description, dup_seconds=DUP_SECONDS,
                                        ip_address=ip_address)
        return gateway.charge_token(token, amount_minor, currency, order_id=order_id,
                                    order_description=order_description)


def _provider(gateway: Gateway) -> str:
    """The metrics' provider label of a gateway client: ``nmi`` for NmiGateway."""
    return type(gateway).__name__.removesuffix("Gateway").lower() or "gateway"


def _description(case: RecoveryCase) -> str | None:
    return case.transaction.order_description



def plain_reason(decline: DeclineInfo | None, *, this_card: bool = False) -> str:
    """What went wrong, in words a customer understands (no codes), in the current locale's language.

    ``this_card``: about the card the customer just entered rather than the one on file.
    """
    if decline is None:
        return ""
    text = (THIS_CARD_REASONS.get(decline.reason) if this_card else None) \
        or PLAIN_REASONS.get(decline.reason, PLAIN_REASONS[DeclineReason.unknown])
    return _(text)


def N_(text: str) -> str:
    """Marks a message for extraction; :func:`plain_reason` translates it when it is shown."""
    return text


PLAIN_REASONS: dict[DeclineReason, str] = {
    DeclineReason.insufficient_funds: N_("Your bank declined the payment because there was not enough money "
                                      "available on the card."),
    DeclineReason.do_not_honor: N_("Your bank declined the payment without giving a reason."),
    DeclineReason.expired_card: N_("The card we have on file has expired."),
    DeclineReason.invalid_card_data: N_("Some of the card details we have on file are no longer valid."),
    DeclineReason.lost_stolen_fraud: N_("Your bank blocked the card we have on file."),
    DeclineReason.stop_recurring: N_("Your bank asked us to stop charging the card we have on file."),
    DeclineReason.updated_card_available: N_("Your bank has issued you a new card, so the one we have on file "
                                          "no longer works."),
    DeclineReason.retry_later: N_("Your bank could not approve the payment at that moment."),
    DeclineReason.issuer_unavailable: N_("We could not reach your bank at that moment."),
    DeclineReason.gateway_error: N_("The payment could not be processed because of a technical problem on our side."),
    DeclineReason.rate_limited: N_("The payment could not be processed because of a technical problem on our side."),
    DeclineReason.unknown: N_("The payment did not go through."),
}

#: the same declines about a card the customer has just entered on the page
THIS_CARD_REASONS: dict[DeclineReason, str] = {
    DeclineReason.insufficient_funds: N_("Your bank declined the payment because there was not enough money "
                                         "available on this card."),
    DeclineReason.expired_card: N_("This card has expired."),
    DeclineReason.invalid_card_data: N_("Some of the details of this card are not valid."),
    DeclineReason.lost_stolen_fraud: N_("Your bank blocked this card."),
    DeclineReason.stop_recurring: N_("Your bank asked us to stop charging this card."),
    DeclineReason.updated_card_available: N_("Your bank has issued you a new card, so this one no longer works."),
}
