"""Ingest: failed transactions from a gateway become customers, transactions and one recovery case each.

Used by the scheduled fetch, the ``flask fetch`` command and the NMI webhook. Ingesting the same data twice changes
nothing: a transaction is identified by (gateway, account, gateway transaction id), enforced by the database, and a
case by its transaction. The fetch cursor moves only after a whole window's pages are committed, and the next
window overlaps the last one (NMI filters on the *last-modified* time), so nothing is skipped and nothing doubled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.gateway_accounts import AccountError, ensure_env_account, gateway_for
from app.gateways.base import FailedTransaction, GatewayError
from app.models import CaseTransition, Customer, FetchCursor, GatewayAccount, RecoveryCase, Transaction
from app.models.types import utcnow
from app.settings import get_setting
from rules.case_states import CaseState
from rules.declines import classify_decline
from rules.product_types import ProductLine, ProductTypeRules, value_band
from rules.timing import detect_timezone

log = logging.getLogger(__name__)

CHUNK = 500


@dataclass
class IngestResult:
    seen: int = 0
    new_transactions: int = 0
    new_customers: int = 0
    new_cases: int = 0
    case_ids: list[int] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.seen += other.seen
        self.new_transactions += other.new_transactions
        self.new_customers += other.new_customers
        self.new_cases += other.new_cases
        self.case_ids.extend(other.case_ids)


@dataclass
class FetchReport:
    account: str
    ok: bool = True
    pages: int = 0
    result: IngestResult = field(default_factory=IngestResult)
    window: tuple[datetime, datetime] | None = None
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    error: str | None = None

    def summary(self) -> str:
        r = self.result
        window = ""
        if self.window:
            window = f" window {self.window[0]:%Y-%m-%d %H:%M:%S}..{self.window[1]:%Y-%m-%d %H:%M:%S} UTC,"
        head = (
            f"{self.account}:{window} {self.pages} page(s), {r.seen} failed sale(s) seen, "
            f"{r.new_transactions} new, {r.new_customers} new customer(s), {r.new_cases} case(s) opened"
        )
        if self.ok:
            return head
        return f"{head}; FAILED: {self.error} (cursor kept at {self.cursor_before})"


# -- the ingest core ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestContext:
    account_id: int
    product_rules: ProductTypeRules
    bands: Any


def ingest_context(account: GatewayAccount) -> IngestContext:
    rules = ProductTypeRules.from_config(
        get_setting("product_rules") or [], default=get_setting("default_product_type") or "one_time"
    )
    return IngestContext(account.id, rules, get_setting("value_bands"))


def ingest_records(records: Iterable[FailedTransaction], ctx: IngestContext) -> IngestResult:
    """Store failed transactions, committing every chunk. Safe to call with records already stored."""
    total = IngestResult()
    iterator = iter(records)
    while chunk := list(islice(iterator, CHUNK)):
        total.add(_ingest_chunk_safely(chunk, ctx))
    return total


def _ingest_chunk_safely(chunk: Sequence[FailedTransaction], ctx: IngestContext) -> IngestResult:
    try:
        result = _ingest_chunk(chunk, ctx)
        db.session.commit()
        return result
    except IntegrityError:
        # Another writer (a webhook, a second fetch) stored some of these meanwhile: go one by one.
        db.session.rollback()
        total = IngestResult()
        for record in chunk:
            try:
                total.add(_ingest_chunk([record], ctx))
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                total.seen += 1
        return total


def _dedupe(chunk: Sequence[FailedTransaction]) -> list[FailedTransaction]:
    latest: dict[tuple[str, str], FailedTransaction] = {}
    for record in chunk:
        key = (record.gateway, record.gateway_transaction_id)
        if key not in latest or record.modified_at >= latest[key].modified_at:
            latest[key] = record
    return list(latest.values())


def _ingest_chunk(chunk: Sequence[FailedTransaction], ctx: IngestContext) -> IngestResult:
    result = IngestResult(seen=len(chunk))
    records = _dedupe(chunk)
    by_gateway: dict[str, list[str]] = {}
    for r in records:
        by_gateway.setdefault(r.gateway, []).append(r.gateway_transaction_id)
    existing: set[tuple[str, str]] = set()
    for gateway, ids in by_gateway.items():
        existing.update(
            (gateway, tid)
            for tid in db.session.scalars(
                sa.select(Transaction.gateway_transaction_id).where(
                    Transaction.gateway == gateway,
                    Transaction.gateway_account_id == ctx.account_id,
                    Transaction.gateway_transaction_id.in_(ids),
                )
            )
        )
    fresh = [r for r in records if (r.gateway, r.gateway_transaction_id) not in existing]
    if not fresh:
        return result
    customers, created = _customers_for(fresh, ctx)
    result.new_customers = created
    transactions = []
    for record in fresh:
        customer = customers[_customer_key(record)]
        transactions.append(_transaction_row(record, customer, ctx))
        _count_failure(customer, record)
    db.session.add_all(transactions)
    db.session.flush()
    cases = [
        RecoveryCase(
            transaction_id=tx.id,
            customer_id=tx.customer_id,
            state=CaseState.OPEN.value,
            amount_due_minor=tx.amount_minor,
            currency=tx.currency,
        )
        for tx in _first_failures(transactions, ctx)
    ]
    db.session.add_all(cases)
    db.session.flush()
    db.session.add_all(
        CaseTransition(
            case_id=case.id, from_state=None, to_state=CaseState.OPEN.value, reason="payment failed", actor="ingest"
        )
        for case in cases
    )
    result.new_transactions = len(transactions)
    result.new_cases = len(cases)
    result.case_ids = [c.id for c in cases]
    return result


OPEN_CASE_STATES = ("open", "contacting", "escalated")


def _first_failures(transactions: list[Transaction], ctx: IngestContext) -> list[Transaction]:
    """The transactions that open a case: one case per failed payment, not per retry of the same order.

    A failure whose order already has an open case (a gateway or customer retry of the same order) is stored as a
    transaction of its own but opens nothing. An approval (code 100) that came in as "failed" opens nothing.
    """
    candidates = [tx for tx in transactions if tx.decline_kind is not None]
    orders = {tx.order_id for tx in candidates if tx.order_id}
    covered: set[str] = set()
    if orders:
        covered = set(
            db.session.scalars(
                sa.select(Transaction.order_id)
                .join(RecoveryCase, RecoveryCase.transaction_id == Transaction.id)
                .where(
                    Transaction.gateway_account_id == ctx.account_id,
                    Transaction.order_id.in_(orders),
                    RecoveryCase.state.in_(OPEN_CASE_STATES),
                )
            )
        )
    chosen = []
    for tx in sorted(candidates, key=lambda t: t.failed_at):
        if tx.order_id:
            if tx.order_id in covered:
                continue
            covered.add(tx.order_id)
        chosen.append(tx)
    return chosen


def _customer_key(record: FailedTransaction) -> tuple[str, str]:
    c = record.customer
    if c.customer_id:
        return ("id", c.customer_id)
    if c.email:
        return ("email", c.email.strip().lower())
    if c.phone_e164:
        return ("phone", c.phone_e164)
    return ("tx", record.gateway_transaction_id)  # nothing to match on: a customer of its own


def _customers_for(
    records: Sequence[FailedTransaction], ctx: IngestContext
) -> tuple[dict[tuple[str, str], Customer], int]:
    keys = {_customer_key(r): r for r in sorted(records, key=lambda r: r.modified_at)}
    found: dict[tuple[str, str], Customer] = {}
    ids = [k[1] for k in keys if k[0] == "id"]
    emails = [k[1] for k in keys if k[0] == "email"]
    phones = [k[1] for k in keys if k[0] == "phone"]
    base = sa.select(Customer).where(Customer.gateway_account_id == ctx.account_id)
    if ids:
        for c in db.session.scalars(base.where(Customer.gateway_customer_id.in_(ids))):
            found[("id", c.gateway_customer_id or "")] = c
    if emails:
        for c in db.session.scalars(base.where(Customer.email.in_(emails), Customer.gateway_customer_id.is_(None))):
            found.setdefault(("email", (c.email or "").lower()), c)
    if phones:
        for c in db.session.scalars(
            base.where(
                Customer.phone_e164.in_(phones), Customer.gateway_customer_id.is_(None), Customer.email.is_(None)
            )
        ):
            found.setdefault(("phone", c.phone_e164 or ""), c)
    created = 0
    for key, record in keys.items():
        customer = found.get(key)
        if customer is None:
            customer = Customer(
                gateway_account_id=ctx.account_id,
                successful_payments=0,
                failed_payments=0,
                lifetime_value_minor=0,
                tags=[],
                vip=False,
            )
            db.session.add(customer)
            found[key] = customer
            created += 1
        _update_customer(customer, record)
    return found, created


def _update_customer(customer: Customer, record: FailedTransaction) -> None:
    """Fill in what the gateway knows; newer records win for contact data, an operator's choices are kept."""
    c = record.customer
    if customer.last_seen_at is not None and record.modified_at < customer.last_seen_at:
        return
    customer.gateway_customer_id = c.customer_id or customer.gateway_customer_id
    customer.vault_id = c.customer_id or customer.vault_id
    for attr in ("first_name", "last_name", "phone_e164", "phone_raw", "city", "postal_code", "card_masked"):
        value = getattr(c, attr)
        if value:
            setattr(customer, attr, value[: _limit(attr)])
    if c.email:
        customer.email = c.email.strip().lower()[:254]
    if c.country:
        customer.country = c.country.upper()[:2]
    if c.region:
        customer.region = c.region.upper()[:64]
    if c.card_expiry:
        customer.card_expiry = c.card_expiry[:7]
    customer.locale = customer.locale or _default_locale(customer.country)
    guess = detect_timezone(
        explicit=customer.timezone_explicit,
        country=customer.country,
        region=customer.region,
        postal_code=customer.postal_code,
        phone=customer.phone_e164,
    )
    customer.timezone_candidates = list(guess.zones)
    customer.timezone = guess.zones[0] if len(guess.zones) == 1 else (guess.zones[0] if guess.zones else None)
    customer.timezone_source = guess.source
    customer.timezone_confidence = Decimal(str(round(guess.confidence, 3)))
    customer.first_seen_at = min(filter(None, (customer.first_seen_at, record.failed_at)))
    customer.last_seen_at = max(filter(None, (customer.last_seen_at, record.modified_at)))


_LIMITS = {
    "first_name": 100,
    "last_name": 100,
    "phone_e164": 20,
    "phone_raw": 40,
    "city": 100,
    "postal_code": 20,
    "card_masked": 24,
}


def _limit(attr: str) -> int:
    return _LIMITS[attr]


def _default_locale(country: str | None) -> str:
    from babel import Locale, UnknownLocaleError

    if not country:
        return "en_US"
    try:
        language = {"US": "en", "GB": "en", "CA": "en", "AU": "en", "IN": "en", "IE": "en", "NZ": "en"}.get(country)
        if language is None:
            from babel.languages import get_official_languages

            official = get_official_languages(country, de_facto=True)
            language = official[0] if official else "en"
        return str(Locale.parse(f"{language}_{country}"))
    except (UnknownLocaleError, ValueError):
        return "en_US"


def _count_failure(customer: Customer, record: FailedTransaction) -> None:
    customer.failed_payments = (customer.failed_payments or 0) + 1


def _transaction_row(record: FailedTransaction, customer: Customer, ctx: IngestContext) -> Transaction:
    decline = classify_decline(
        record.decline_code, record.merchant_advice_code, gateway=record.gateway, text=record.decline_text
    )
    lines = [ProductLine(sku=p.sku, description=p.description) for p in record.products]
    return Transaction(
        gateway=record.gateway,
        gateway_account_id=ctx.account_id,
        gateway_transaction_id=record.gateway_transaction_id,
        customer=customer,
        status="failed",
        amount_minor=record.amount_minor,
        currency=record.currency.upper(),
        value_band=value_band(record.amount_minor, record.currency, ctx.bands),
        decline_code=record.decline_code,
        decline_text=(record.decline_text or "")[:255] or None,
        merchant_advice_code=record.merchant_advice_code,
        decline_reason=decline.reason.value,
        decline_kind=None if decline.approved else decline.kind.value,
        product_type=ctx.product_rules.classify(lines, record.order_description),
        order_id=(record.order_id or "")[:128] or None,
        order_description=(record.order_description or "")[:255] or None,
        card_masked=record.customer.card_masked,
        is_first_payment=(customer.successful_payments or 0) == 0,
        failed_at=record.failed_at,
        modified_at=record.modified_at,
        raw=_json_safe(record.raw),
    )


def _json_safe(raw: Any) -> Any:
    if isinstance(raw, dict) or hasattr(raw, "items"):
        return {str(k): _json_safe(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):
        return [_json_safe(v) for v in raw]
    if isinstance(raw, datetime | Decimal):
        return str(raw)
    return raw


# -- fetching ------------------------------------------------------------------------------------------------

_process_locks: dict[int, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class FetchBusy(Exception):
    pass


@contextmanager
def fetch_lock(account_id: int) -> Iterator[None]:
    """One fetch per account at a time, across processes on MySQL (GET_LOCK), within the process on SQLite."""
    engine = db.engine
    if engine.dialect.name == "mysql":
        name = f"recoup-fetch-{account_id}"
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() != 1:
                raise FetchBusy(f"another fetch of account {account_id} is running")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        return
    with _process_locks_guard:
        lock = _process_locks.setdefault(account_id, threading.Lock())
    if not lock.acquire(blocking=False):
        raise FetchBusy(f"another fetch of account {account_id} is running")
    try:
        yield
    finally:
        lock.release()


def fetch_accounts(name: str | None = None) -> list[FetchReport]:
    ensure_env_account()
    query = sa.select(GatewayAccount).where(GatewayAccount.enabled.is_(True)).order_by(GatewayAccount.id)
    if name:
        query = query.where(GatewayAccount.name == name)
    return [fetch_account(account.id) for account in db.session.scalars(query).all()]


def fetch_account(account_id: int, *, now: datetime | None = None) -> FetchReport:
    account = db.session.get(GatewayAccount, account_id)
    if account is None:
        raise AccountError(f"no gateway account {account_id}")
    report = FetchReport(account=account.name)
    try:
        with fetch_lock(account_id):
            _fetch_window(account, report, now or utcnow())
    except FetchBusy as exc:
        report.ok, report.error = False, str(exc)
    except (GatewayError, AccountError) as exc:
        db.session.rollback()
        report.ok, report.error = False, f"{type(exc).__name__}: {exc}"
        log.error("fetch of %s failed: %s", account.name, report.error)
        _note_cursor(account_id, "error", report.error, report.result.seen)
    if report.result.case_ids:
        hand_to_planning(report.result.case_ids)
    return report


def _cursor(account_id: int) -> FetchCursor:
    cursor = db.session.scalar(
        sa.select(FetchCursor).where(FetchCursor.gateway_account_id == account_id, FetchCursor.kind == "failed_sales")
    )
    if cursor is None:
        cursor = FetchCursor(gateway_account_id=account_id, kind="failed_sales")
        db.session.add(cursor)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return _cursor(account_id)
    return cursor


def _fetch_window(account: GatewayAccount, report: FetchReport, now: datetime) -> None:
    cursor = _cursor(account.id)
    report.cursor_before = cursor.position
    overlap = timedelta(seconds=int(get_setting("fetch_overlap_seconds")))
    if cursor.position is None:
        since = now - timedelta(days=int(get_setting("fetch_initial_lookback_days")))
    else:
        since = cursor.position - overlap
    until = now.replace(microsecond=0)
    report.window = (since, until)
    gateway = gateway_for(account)
    ctx = ingest_context(account)
    for page in gateway.fetch_failed(since, until):
        report.pages += 1
        report.result.add(ingest_records(page.records, ctx))
    # Every page of the window is committed: only now may the cursor move.
    cursor = _cursor(account.id)
    cursor.position = until
    cursor.last_run_at = utcnow()
    cursor.last_status = "ok"
    cursor.last_error = None
    cursor.rows_last_run = report.result.seen
    db.session.commit()
    report.cursor_after = until


def _note_cursor(account_id: int, status: str, error: str | None, rows: int) -> None:
    cursor = _cursor(account_id)
    cursor.last_run_at = utcnow()
    cursor.last_status = status
    cursor.last_error = error
    cursor.rows_last_run = rows
    db.session.commit()


def hand_to_planning(case_ids: list[int]) -> None:
    """New cases go to the planner, in batches, on the high queue."""
    from app.queue import get_queue

    queue = get_queue()
    for start in range(0, len(case_ids), 200):
        queue.enqueue("workers.jobs.plan_cases", case_ids[start : start + 200], queue="high")
