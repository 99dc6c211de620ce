"""Ingest: failed transactions from a gateway become customers, transactions and one recovery case each; successful
sales and refunds become the customers' payment history (successful payments, lifetime value, first / repeat).

Used by the scheduled fetch, the ``flask fetch`` command and the NMI webhook. Ingesting the same data twice changes
nothing: a transaction is identified by (gateway, account, gateway transaction id), enforced by the database, and a
case by its transaction. The fetch cursor moves only after a whole window's pages are committed, and the next
window overlaps the last one (NMI filters on the *last-modified* time), so nothing is skipped and nothing doubled.

Each account has two cursors: ``failed_sales`` (failed sales: transactions with status ``failed`` and their
cases) and ``sales`` (approved sales, stored as status ``approved``, refunds, stored as status ``refunded``, and
voided sales, stored or turned to status ``voided``, no payment; an authorisation is a sale once captured; they never
open a case). One run fetches the failed sales first, then the sales, then hands new cases to planning,
so a plan sees the history fetched in the same run. A customer's history is recomputed from their stored rows
(never incremented), so a sale seen twice, by a fetch and by Recoup's own payment, counts once.

Recoup's own charges come back too (the payment page's attempts, retries, part and later payments): they are
known by their order id or gateway transaction id (:mod:`app.ingest.own_charges`). A declined one is already its case's
payment history, so it is not stored as a failed payment and opens nothing; an approved one is booked as its
case's customer's sale. A failure whose order already has a case joins that case, or opens a new one that names
it (:mod:`app.ingest.order_cases`): never silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.accounts.gateway_accounts import AccountError, ensure_env_account, gateway_for
from app.clock import business_now
from app.extensions import db
from app.gateways.base import FailedTransaction, GatewayError, InvalidRecord, SaleTransaction
from app.ingest import order_cases, quarantine
from app.ingest.customers import customer_key, upsert_customers
from app.ingest.own_charges import note_own_charges, own_charges
from app.ingest.validation import check_record, problems_as_dicts
from app.locks import Busy, exclusive, lock_name
from app.models import CaseTransition, Customer, FetchCursor, GatewayAccount, RecoveryCase, Transaction
from app.models.types import utcnow
from app.queue import get_queue
from app.retry import committed
from app.settings import get_setting
from app.writes import UNCACHED, per_row
from rules.case_states import CaseState
from rules.declines import classify_decline
from rules.money import FxRates, MissingRateError, MoneyError, convert_amount, is_currency
from rules.money import currency_exponent as rules_exponent
from rules.product_types import ProductLine, ProductTypeRules, value_band
from workers import jobs

log = logging.getLogger(__name__)

CHUNK = 1000
FAILED_KIND = "failed_sales"
SALES_KIND = "sales"


@dataclass
class IngestResult:
    seen: int = 0
    new_transactions: int = 0
    new_customers: int = 0
    new_cases: int = 0
    joined: int = 0  # failures of an order that has a case: attached to it (app.ingest.order_cases), no new case
    own_charges: int = 0  # Recoup's own charges reported back: payment history, not failures (app.ingest.own_charges)
    quarantined: int = 0  # refused by the checks (app.ingest.validation): kept in quarantine, nothing opened
    case_ids: list[int] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.seen += other.seen
        self.quarantined += other.quarantined
        self.new_transactions += other.new_transactions
        self.new_customers += other.new_customers
        self.new_cases += other.new_cases
        self.joined += other.joined
        self.own_charges += other.own_charges
        self.case_ids.extend(other.case_ids)

    def extras(self) -> str:
        parts = []
        if self.joined:
            parts.append(f", {self.joined} joined an order's case")
        if self.own_charges:
            parts.append(f", {self.own_charges} of Recoup's own charge(s) recognised")
        if self.quarantined:
            parts.append(f", {self.quarantined} quarantined")
        return "".join(parts)


@dataclass
class SalesResult:
    seen: int = 0
    new_sales: int = 0
    new_refunds: int = 0
    voided: int = 0  # sales (or captures) voided: stored, or turned from approved, as status ``voided``
    new_customers: int = 0
    without_customer: int = 0  # stored, but nothing ties them to a customer (no id, email, phone or sale)
    customers_updated: int = 0
    own_charges: int = 0  # Recoup's own sales (and refunds of them): booked to their case's customer
    quarantined: int = 0  # refused by the checks (app.ingest.validation): kept in quarantine, not stored

    def add(self, other: SalesResult) -> None:
        self.own_charges += other.own_charges
        self.quarantined += other.quarantined
        self.seen += other.seen
        self.new_sales += other.new_sales
        self.new_refunds += other.new_refunds
        self.voided += other.voided
        self.new_customers += other.new_customers
        self.without_customer += other.without_customer
        self.customers_updated += other.customers_updated


@dataclass
class SalesReport:
    ok: bool = True
    skipped: bool = False  # not fetched: the failed sales did not complete, or the gateway cannot list sales
    pages: int = 0
    result: SalesResult = field(default_factory=SalesResult)
    window: tuple[datetime, datetime] | None = None
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    error: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return f"sales: not fetched ({self.error})" if self.error else "sales: not fetched"
        r = self.result
        head = (
            f"sales:{_window_text(self.window)} {self.pages} page(s), {r.seen} sale(s)/refund(s) seen, "
            f"{r.new_sales} new sale(s), {r.new_refunds} new refund(s), {r.new_customers} new customer(s)"
            + (f", {r.voided} voided" if r.voided else "")
            + (f", {r.quarantined} quarantined" if r.quarantined else "")
        )
        if self.ok:
            return head
        return f"{head}; FAILED: {self.error} (sales cursor kept at {self.cursor_before})"


def _window_text(window: tuple[datetime, datetime] | None) -> str:
    if not window:
        return ""
    return f" window {window[0]:%Y-%m-%d %H:%M:%S}..{window[1]:%Y-%m-%d %H:%M:%S} UTC,"


@dataclass
class FetchReport:
    """One run for one account. ``ok`` and ``error`` are about the failed sales (what opens cases); the sales
    history fetched after them reports in ``sales`` (a failure there leaves ``ok`` alone but shows in the
    summary and the ``sales`` cursor)."""

    account: str
    ok: bool = True
    pages: int = 0
    result: IngestResult = field(default_factory=IngestResult)
    window: tuple[datetime, datetime] | None = None
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    error: str | None = None
    sales: SalesReport = field(default_factory=SalesReport)

    def summary(self) -> str:
        r = self.result
        head = (
            f"{self.account}:{_window_text(self.window)} {self.pages} page(s), {r.seen} failed sale(s) seen, "
            f"{r.new_transactions} new, {r.new_customers} new customer(s), {r.new_cases} case(s) opened"
            f"{r.extras()}"
        )
        if not self.ok:
            return f"{head}; FAILED: {self.error} (cursor kept at {self.cursor_before})"
        return f"{head}; {self.sales.summary()}"


# -- the ingest core ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestContext:
    account_id: int
    product_rules: ProductTypeRules
    bands: Any
    fx: FxRates | None = None  # lifetime value: other currencies are converted into the customer's main one


def ingest_context(account: GatewayAccount) -> IngestContext:
    rules = ProductTypeRules.from_config(
        get_setting("product_rules") or [], default=get_setting("default_product_type") or "one_time"
    )
    return IngestContext(account.id, rules, get_setting("value_bands"), _fx_rates())


def _fx_rates() -> FxRates | None:
    value = get_setting("fx_rates")
    if not value:
        return None
    try:
        return FxRates.from_mapping(value)
    except (MoneyError, TypeError, AttributeError) as exc:
        log.error("the fx_rates setting is unusable (%s): lifetime values count only the main currency", exc)
        return None


def ingest_records(
    records: Iterable[FailedTransaction | InvalidRecord], ctx: IngestContext, *, source: str = quarantine.FETCH
) -> IngestResult:
    """Store failed transactions, committing every chunk. Safe to call with records already stored. A record the
    checks refuse (or the gateway could not read) is quarantined instead, and the others go on."""
    return _store_in_chunks(records, ctx, _ingest_chunk, IngestResult, kind=quarantine.FAILED_SALE, source=source)


def _store_in_chunks(
    records: Iterable[Any], ctx: IngestContext, store: Any, result_type: Any, *, kind: str,
    source: str = quarantine.FETCH,
) -> Any:
    """Store ``records`` a chunk at a time with ``store(chunk, ctx)``, committing each chunk, after the checks
    (:func:`accepted`). When another writer (a webhook, Recoup's own payment, a second fetch) stored some of a chunk
    meanwhile, that chunk goes one by one."""
    total = result_type()
    iterator = iter(records)
    while chunk := list(islice(iterator, CHUNK)):
        chunk = accepted(chunk, ctx, total, kind=kind, source=source)
        if not chunk:
            continue
        try:
            total.add(committed(lambda: store(chunk, ctx), what="an ingest chunk"))  # noqa: B023 (called here)
        except IntegrityError:
            db.session.rollback()
            for record in chunk:
                try:
                    total.add(committed(lambda: store([record], ctx), what="an ingest record"))  # noqa: B023
                except IntegrityError:
                    db.session.rollback()
                    total.seen += 1
    return total


def accepted(chunk: Sequence[Any], ctx: IngestContext, total: Any, *, kind: str, source: str) -> list[Any]:
    """The records of ``chunk`` that pass the checks (cleaned); the others are quarantined (committed) and counted
    in ``total`` as seen and quarantined. A field dropped from an accepted record is noted in its raw data."""
    now = max(utcnow(), business_now())
    kept: list[Any] = []
    refused: list[InvalidRecord] = []
    for record in chunk:
        if isinstance(record, InvalidRecord):
            refused.append(record)
            continue
        checked = check_record(record, now)
        if checked.record is None:
            refused.append(InvalidRecord(record.gateway, record.gateway_transaction_id, checked.refused,
                                         raw=record.raw, modified_at=record.modified_at))
            continue
        if checked.dropped:
            log.info("%s %s: %s", record.gateway, record.gateway_transaction_id,
                     "; ".join(f"{p.field} dropped: {p.problem}" for p in checked.dropped))
            kept.append(replace(checked.record, raw={**checked.record.raw,
                                                     "recoup_dropped": problems_as_dicts(checked.dropped)}))
        else:
            kept.append(checked.record)
    if refused:
        quarantine.quarantine(refused, ctx.account_id, kind=kind, source=source)
        total.seen += len(refused)
        total.quarantined += len(refused)
    if kept and quarantine.release(kept, ctx.account_id):  # corrected at the gateway since it was quarantined
        db.session.commit()
    return kept


def _dedupe(chunk: Sequence[Any]) -> list[Any]:
    latest: dict[tuple[str, str], Any] = {}
    for record in chunk:
        key = (record.gateway, record.gateway_transaction_id)
        if key not in latest or record.modified_at >= latest[key].modified_at:
            latest[key] = record
    return list(latest.values())


def _ingest_chunk(chunk: Sequence[FailedTransaction], ctx: IngestContext) -> IngestResult:
    result = IngestResult(seen=len(chunk))
    records = _dedupe(chunk)
    existing = _existing_ids(records, ctx)
    fresh = [r for r in records if (r.gateway, r.gateway_transaction_id) not in existing]
    own = own_charges(fresh, ctx.account_id)
    if own:  # Recoup's own attempts: the case's payment history already, never a new failure
        note_own_charges(fresh, own)
        result.own_charges = len(own)
        fresh = [r for r in fresh if r.gateway_transaction_id not in own]
    if not fresh:
        return result
    failures: dict[tuple[str, str], int] = {}
    for record in fresh:
        key = customer_key(record)
        failures[key] = failures.get(key, 0) + 1
    customers = upsert_customers(fresh, ctx.account_id, failures=failures)
    result.new_customers = customers.created
    first_paid = _first_approved_at(set(customers.paying))
    transactions = []
    for record in fresh:
        customer_id = customers.ids[customer_key(record)]
        paid = first_paid.get(customer_id)
        is_first = paid is None or record.failed_at <= paid
        transactions.append(_transaction_row(record, customer_id, ctx, is_first=is_first))
    # Core, not the ORM: no per-row unit of work; the ids come back with the rows
    table = Transaction.__table__
    inserted = db.session.execute(
        table.insert().returning(table.c.id, table.c.gateway, table.c.gateway_transaction_id), transactions
    )
    ids = {(gateway, gateway_id): pk for pk, gateway, gateway_id in inserted}
    for row in transactions:
        row["id"] = ids[(row["gateway"], row["gateway_transaction_id"])]
    _count_new_failures(transactions, counted=customers.new_ids)
    decisions = order_cases.decide(transactions, ctx.account_id)
    now = utcnow()
    case_ids = _open_cases(decisions, now)
    result.case_ids = [case_ids[tx["id"]] for tx in decisions.opening]
    order_cases.record_joins(decisions, case_ids, now)
    result.new_transactions = len(transactions)
    result.new_cases = len(decisions.opening)
    result.joined = len(decisions.joins)
    return result


def _open_cases(decisions: order_cases.Decisions, now: datetime) -> dict[int, int]:
    """One case per opening failure, with its first transition; returns case ids by transaction id."""
    opening = decisions.opening
    if not opening:
        return {}
    table = RecoveryCase.__table__
    rows = [
        {"transaction_id": tx["id"], "customer_id": tx["customer_id"], "state": CaseState.OPEN.value,
         "amount_due_minor": tx["amount_minor"], "currency": tx["currency"], "holdout": False,
         "opened_at": now, "updated_at": now}
        for tx in opening
    ]
    inserted = db.session.execute(table.insert().returning(table.c.transaction_id, table.c.id), rows)
    case_ids = {transaction_id: case_id for transaction_id, case_id in inserted}
    db.session.execute(CaseTransition.__table__.insert(), [
        {"case_id": case_ids[tx["id"]], "from_state": None, "to_state": CaseState.OPEN.value,
         "reason": decisions.reasons[tx["id"]], "actor": "ingest", "at": now}
        for tx in opening
    ])
    return case_ids


def _count_new_failures(transactions: Sequence[dict[str, Any]], *, counted: frozenset[int] = frozenset()) -> None:
    """Each customer's failure count goes up by the failed transactions this chunk inserted (each inserted by
    exactly one writer: a second insert of the same one fails the unique key), and their last-seen time moves
    forward; customers in ``counted`` were inserted by this chunk with both already. One UPDATE for the chunk, its
    row locks on those customers only, taken in id order (the primary key's range): writers of different customers
    never wait on each other, and writers of the same customer add up (a recount from the transactions, as
    :func:`_refresh_counters` does, took shared locks on the transactions' index that deadlocked concurrent
    webhooks of different customers)."""
    counts: dict[int, list[Any]] = {}
    for row in transactions:
        if row["customer_id"] in counted:
            continue
        entry = counts.setdefault(row["customer_id"], [0, row["modified_at"]])
        entry[0] += 1
        entry[1] = max(entry[1], row["modified_at"])
    if not counts:
        return
    c = Customer.__table__
    ids = sorted(counts)
    seen = per_row(c.c.id, {cid: counts[cid][1] for cid in ids}, c.c.last_seen_at.type, "seen")
    added = per_row(c.c.id, {cid: counts[cid][0] for cid in ids}, sa.Integer(), "added")
    db.session.execute(
        sa.update(c)
        .where(c.c.id.in_(ids))
        .values(failed_payments=c.c.failed_payments + added,
                last_seen_at=sa.case((sa.or_(c.c.last_seen_at.is_(None), c.c.last_seen_at < seen), seen),
                                     else_=c.c.last_seen_at)),
        execution_options=UNCACHED,
    )


def _refresh_counters(customer_ids: set[int]) -> None:
    """Failure count and last-seen time, recomputed from the stored transactions in one set-based UPDATE.

    Counting in Python would UPDATE every returning customer row by row (one round trip each); this is one
    statement per chunk, and exact however often, or by however many writers, a transaction was seen.
    """
    if not customer_ids:
        return
    t = Transaction.__table__
    db.session.execute(
        sa.update(Customer)
        .where(Customer.id.in_(customer_ids))
        .values(
            failed_payments=sa.select(sa.func.count())
            .where(t.c.customer_id == Customer.id, t.c.status == "failed")
            .scalar_subquery(),
            last_seen_at=sa.select(sa.func.max(t.c.modified_at))
            .where(t.c.customer_id == Customer.id)
            .scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )


def _transaction_row(
    record: FailedTransaction, customer_id: int, ctx: IngestContext, *, is_first: bool
) -> dict[str, Any]:
    decline = classify_decline(
        record.decline_code, record.merchant_advice_code, gateway=record.gateway, text=record.decline_text
    )
    lines = [ProductLine(sku=p.sku, description=p.description) for p in record.products]
    now = utcnow()
    return {
        "gateway": record.gateway,
        "gateway_account_id": ctx.account_id,
        "gateway_transaction_id": record.gateway_transaction_id,
        "customer_id": customer_id,
        "status": "failed",
        "amount_minor": record.amount_minor,
        "currency": record.currency.upper(),
        "value_band": value_band(record.amount_minor, record.currency, ctx.bands),
        "decline_code": record.decline_code,
        "decline_text": (record.decline_text or "")[:255] or None,
        "merchant_advice_code": record.merchant_advice_code,
        "decline_reason": decline.reason.value,
        "decline_kind": None if decline.approved else decline.kind.value,
        "product_type": ctx.product_rules.classify(lines, record.order_description),
        "order_id": (record.order_id or "")[:128] or None,
        "order_description": (record.order_description or "")[:255] or None,
        "card_masked": record.customer.card_masked,
        "is_first_payment": is_first,
        "failed_at": record.failed_at,
        "modified_at": record.modified_at,
        "raw": dict(record.raw),  # strings and lists from the XML; the engine's serializer handles the rest
        "created_at": now,
    }


# -- sales history ---------------------------------------------------------------------------------------------


def ingest_sales(records: Iterable[SaleTransaction], ctx: IngestContext) -> SalesResult:
    """Store approved sales (status ``approved``) and refunds (status ``refunded``) and recompute the history of
    the customers they belong to, committing every chunk. Never opens a case. Safe to call with records stored."""
    return _store_in_chunks(records, ctx, _sales_chunk, SalesResult, kind=quarantine.SALE)


def _sales_chunk(chunk: Sequence[SaleTransaction], ctx: IngestContext) -> SalesResult:
    result = SalesResult(seen=len(chunk))
    records = _dedupe(chunk)
    existing = _existing_ids(records, ctx)
    fresh = [r for r in records if (r.gateway, r.gateway_transaction_id) not in existing]
    stored_voids = [r for r in records if r.is_void and (r.gateway, r.gateway_transaction_id) in existing]
    voided_customers = _void_stored(stored_voids, ctx, result)
    if not fresh:
        refresh_history(_customers_by_id(voided_customers), ctx.fx)
        return result
    # Recoup's own sales (and their refunds) are its case's customer's, whatever the gateway names as payer:
    # a new card's sale names nobody, and what it does name must not overwrite the customer's contact data.
    own = own_charges(fresh, ctx.account_id)
    result.own_charges = len(own)
    payers = _case_customers({charge.case_id for charge in own.values()})
    known = [r for r in fresh if customer_key(r)[0] != "tx" and r.gateway_transaction_id not in own]
    customers = upsert_customers(known, ctx.account_id) if known else None
    result.new_customers = customers.created if customers else 0
    originals = _refunded_sale_customers([r for r in fresh if r.is_refund and customer_key(r)[0] == "tx"], ctx)
    rows = []
    for record in fresh:
        key = customer_key(record)
        charge = own.get(record.gateway_transaction_id)
        if charge is not None:
            customer_id = payers.get(charge.case_id)
        elif key[0] != "tx":
            customer_id = customers.ids.get(key) if customers else None
        else:
            customer_id = originals.get(record.gateway_transaction_id)
        if customer_id is None:
            result.without_customer += 1
            log.info(
                "%s %s %s: nothing ties it to a customer; stored without one",
                record.gateway,
                record.kind,
                record.gateway_transaction_id,
            )
        rows.append(_sale_row(record, customer_id, ctx, payment_id=charge.payment_id if charge else None))
        if record.is_refund:
            result.new_refunds += 1
        elif record.is_void:
            result.voided += 1
        else:
            result.new_sales += 1
    db.session.execute(Transaction.__table__.insert(), rows)
    touched = {row["customer_id"] for row in rows if row["customer_id"] is not None} | voided_customers
    _refresh_counters(touched)
    refresh_history(_customers_by_id(touched), ctx.fx)
    result.customers_updated = len(touched)
    return result


def _void_stored(voids: Sequence[SaleTransaction], ctx: IngestContext, result: SalesResult) -> set[int]:
    """Sales stored as approved that the gateway has since voided become ``voided`` (no payment: the history
    recomputed from the rows leaves them out). Returns the customers whose history changes."""
    customers: set[int] = set()
    for record in voids:
        row = db.session.execute(
            sa.select(Transaction.id, Transaction.customer_id).where(
                Transaction.gateway == record.gateway, Transaction.gateway_account_id == ctx.account_id,
                Transaction.gateway_transaction_id == record.gateway_transaction_id,
                Transaction.status == "approved")
        ).first()
        if row is None:  # stored as voided already
            continue
        db.session.execute(sa.update(Transaction).where(Transaction.id == row.id).values(
            status="voided", is_first_payment=None, modified_at=record.modified_at))
        result.voided += 1
        if row.customer_id is not None:
            customers.add(row.customer_id)
    return customers


def _case_customers(case_ids: set[int]) -> dict[int, int]:
    """The customer id of each case."""
    if not case_ids:
        return {}
    return dict(
        db.session.execute(
            sa.select(RecoveryCase.id, RecoveryCase.customer_id).where(
                RecoveryCase.id.in_(case_ids), RecoveryCase.customer_id.is_not(None)
            )
        ).tuples()
    )


def _customers_by_id(ids: set[int]) -> list[Customer]:
    """The customers as stored now (their rows were just written set-based, past any copy the session holds)."""
    if not ids:
        return []
    query = sa.select(Customer).where(Customer.id.in_(ids)).execution_options(populate_existing=True)
    return list(db.session.scalars(query))


def _existing_ids(records: Sequence[Any], ctx: IngestContext) -> set[tuple[str, str]]:
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
    return existing


def _refunded_sale_customers(refunds: Sequence[SaleTransaction], ctx: IngestContext) -> dict[str, int]:
    """For refunds that name nobody: the customer id of the sale they refund (by the gateway's original transaction
    id, else by order id). Keyed by the refund's transaction id."""
    found: dict[str, int] = {}
    for refund in refunds:
        clauses = []
        if refund.original_transaction_id:  # the gateway leads the unique index: without it, a scan per refund
            clauses.append(sa.and_(Transaction.gateway == refund.gateway,
                                   Transaction.gateway_transaction_id == refund.original_transaction_id))
        if refund.order_id:
            clauses.append(Transaction.order_id == refund.order_id[:128])
        if not clauses:
            continue
        customer_id = db.session.scalar(
            sa.select(Transaction.customer_id)
            .where(
                Transaction.gateway_account_id == ctx.account_id,
                Transaction.status == "approved",
                Transaction.customer_id.is_not(None),
                sa.or_(*clauses),
            )
            .order_by(Transaction.failed_at.desc())
            .limit(1)
        )
        if customer_id is not None:
            found[refund.gateway_transaction_id] = customer_id
    return found


def _sale_row(
    record: SaleTransaction, customer_id: int | None, ctx: IngestContext, *, payment_id: int | None
) -> dict[str, Any]:
    lines = [ProductLine(sku=p.sku, description=p.description) for p in record.products]
    raw = dict(record.raw)
    if payment_id is not None:  # Recoup's own sale: which attempt it was
        raw["recoup_payment_id"] = payment_id
    return {
        "gateway": record.gateway,
        "gateway_account_id": ctx.account_id,
        "gateway_transaction_id": record.gateway_transaction_id,
        "customer_id": customer_id,
        "status": {"refund": "refunded", "void": "voided"}.get(record.kind, "approved"),
        "amount_minor": record.amount_minor,
        "currency": record.currency.upper(),
        "value_band": value_band(record.amount_minor, record.currency, ctx.bands),
        "product_type": ctx.product_rules.classify(lines, record.order_description),
        "order_id": (record.order_id or "")[:128] or None,
        "order_description": (record.order_description or "")[:255] or None,
        "card_masked": record.customer.card_masked,
        "is_first_payment": None,  # set by refresh_history for sales; a refund is no payment
        "failed_at": record.occurred_at,  # the column is the transaction's time: for a sale, when it was approved
        "modified_at": record.modified_at,
        "raw": raw,
        "created_at": utcnow(),
    }


def _first_approved_at(customer_ids: set[int]) -> dict[int, datetime]:
    """When each customer's first approved sale happened (customers without one are left out)."""
    if not customer_ids:
        return {}
    rows = db.session.execute(
        sa.select(Transaction.customer_id, sa.func.min(Transaction.failed_at))
        .where(Transaction.customer_id.in_(customer_ids), Transaction.status == "approved")
        .group_by(Transaction.customer_id)
    ).all()
    return {cid: _as_utc(at) for cid, at in rows if at is not None}


def refresh_history(customers: Iterable[Customer], fx: FxRates | None = None) -> None:
    """Recompute each customer's payment history from their stored transactions (so it is exact however often,
    and by however many writers, a sale was seen): ``successful_payments`` = approved sales; lifetime value = approved
    sales minus refunds, in the customer's main currency (the currency of most of their approved sales; ties go to
    the one paid in first), other currencies converted with ``fx`` or, without a rate, kept out with a log line;
    ``first_seen_at`` no later than the first sale; ``is_first_payment`` on each failed and approved transaction
    = no approved sale before it. Flushes; the caller commits."""
    by_id = {c.id: c for c in customers if c.id is not None}
    if not by_id:
        return
    db.session.flush()
    totals: dict[int, dict[str, dict[str, Any]]] = {cid: {} for cid in by_id}
    for cid, status, currency, count, amount, first in db.session.execute(
        sa.select(
            Transaction.customer_id,
            Transaction.status,
            Transaction.currency,
            sa.func.count(),
            sa.func.sum(Transaction.amount_minor),
            sa.func.min(Transaction.failed_at),
        )
        .where(Transaction.customer_id.in_(by_id), Transaction.status.in_(("approved", "refunded")))
        .group_by(Transaction.customer_id, Transaction.status, Transaction.currency)
    ):
        entry = totals[cid].setdefault(currency, {"sales": 0, "paid": 0, "refunded": 0, "first": None})
        if status == "approved":
            entry["sales"] += int(count)
            entry["paid"] += int(amount or 0)
            entry["first"] = _as_utc(first)
        else:
            entry["refunded"] += int(amount or 0)
    first_paid: dict[int, datetime] = {}
    missing: set[str] = set()
    short = 0
    for cid, customer in by_id.items():
        per_currency = totals[cid]
        customer.successful_payments = sum(e["sales"] for e in per_currency.values())
        firsts = [e["first"] for e in per_currency.values() if e["first"] is not None]
        if firsts:
            first_paid[cid] = min(firsts)
            customer.first_seen_at = min(filter(None, (_as_utc(customer.first_seen_at), first_paid[cid])))
        if not per_currency:
            continue
        main = main_currency(per_currency)
        customer.lifetime_value_currency = main
        customer.lifetime_value_minor, left_out = lifetime_value(
            {cur: e["paid"] - e["refunded"] for cur, e in per_currency.items()}, main, fx
        )
        if left_out:
            missing.update(left_out)
            short += 1
            log.debug("customer %s: lifetime value in %s leaves out %s", cid, main, left_out)
    if missing:
        log.warning(
            "lifetime value of %d customer(s) leaves out amounts in %s: no exchange rate in the fx_rates setting",
            short,
            ", ".join(sorted(missing)),
        )
    _mark_first_payments(by_id, first_paid)


def _mark_first_payments(by_id: dict[int, Customer], first_paid: dict[int, datetime]) -> None:
    to_true: list[int] = []
    to_false: list[int] = []
    for tx_id, cid, at, current in db.session.execute(
        sa.select(Transaction.id, Transaction.customer_id, Transaction.failed_at, Transaction.is_first_payment).where(
            Transaction.customer_id.in_(by_id), Transaction.status.in_(("failed", "approved"))
        )
    ):
        paid = first_paid.get(cid)
        wanted = paid is None or _as_utc(at) <= paid
        if current is not wanted:
            (to_true if wanted else to_false).append(tx_id)
    for value, ids in ((True, to_true), (False, to_false)):
        for start in range(0, len(ids), 1000):
            db.session.execute(
                sa.update(Transaction)
                .where(Transaction.id.in_(ids[start : start + 1000]))
                .values(is_first_payment=value)
                .execution_options(synchronize_session="fetch")
            )


def main_currency(per_currency: dict[str, dict[str, Any]]) -> str:
    """The currency of most approved sales; ties go to the one paid in first, then alphabetical."""
    far = datetime.max.replace(tzinfo=UTC)
    return min(
        per_currency,
        key=lambda cur: (-per_currency[cur]["sales"], per_currency[cur]["first"] or far, cur),
    )


def lifetime_value(net_minor: dict[str, int], main: str, fx: FxRates | None) -> tuple[int, dict[str, int]]:
    """Net amounts per currency (minor units) as one amount in ``main`` (minor units, half-even), and what had
    to be left out for want of an exchange rate."""
    total = Decimal(0)
    left_out: dict[str, int] = {}
    for currency, minor in net_minor.items():
        if minor == 0:
            continue
        if not is_currency(currency) or not is_currency(main):
            left_out[currency] = minor
            continue
        amount = Decimal(minor).scaleb(-rules_exponent(currency))
        try:
            total += convert_amount(amount, currency, main, fx)
        except MissingRateError:
            left_out[currency] = minor
    minor_total = int(total.scaleb(rules_exponent(main)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return minor_total, left_out


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):  # an aggregate read back without its column type
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def record_recovered_payment(payment_id: int) -> bool:
    """Book an approved payment Recoup collected as the customer's approved sale, at once, keyed on its gateway
    transaction id: when the sales fetch later brings the same sale, it finds the row and counts nothing twice
    (and if the fetch came first, this does nothing). True when a row was added."""
    from app.models import Payment

    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.state != "approved" or not payment.gateway_transaction_id:
        return False
    case = db.session.get(RecoveryCase, payment.case_id)
    if case is None or case.transaction is None:
        return False
    failed = case.transaction
    exists = db.session.scalar(
        sa.select(Transaction.id).where(
            Transaction.gateway == failed.gateway,
            Transaction.gateway_account_id == failed.gateway_account_id,
            Transaction.gateway_transaction_id == payment.gateway_transaction_id,
        )
    )
    if exists is not None:
        return False
    customer = case.customer
    db.session.add(
        Transaction(
            gateway=failed.gateway,
            gateway_account_id=failed.gateway_account_id,
            gateway_transaction_id=payment.gateway_transaction_id,
            customer=customer,
            status="approved",
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            value_band=failed.value_band,
            product_type=failed.product_type,
            order_id=payment.order_id,
            order_description=failed.order_description,
            failed_at=_as_utc(payment.completed_at) or utcnow(),
            modified_at=_as_utc(payment.completed_at) or utcnow(),
            raw={"recoup_payment_id": payment.id},
        )
    )
    try:
        db.session.flush()
    except IntegrityError:  # the fetch stored it meanwhile
        db.session.rollback()
        return False
    if customer is not None:
        refresh_history([customer], _fx_rates())
    db.session.commit()
    return True


# -- fetching ------------------------------------------------------------------------------------------------

class FetchBusy(Exception):
    pass


def fetch_lock_name(database: str | None, account_id: int) -> str:
    """The fetch lock's name on a MariaDB server (app.locks.lock_name)."""
    return lock_name("fetch", database, account_id)


@contextmanager
def fetch_lock(account_id: int) -> Iterator[None]:
    """One fetch per account at a time, across processes on MySQL (GET_LOCK), within the process on SQLite."""
    try:
        with exclusive("fetch", account_id):
            yield
    except Busy:
        raise FetchBusy(f"another fetch of account {account_id} is running") from None


def fetch_accounts(name: str | None = None) -> list[FetchReport]:
    ensure_env_account()
    query = sa.select(GatewayAccount).where(GatewayAccount.enabled.is_(True)).order_by(GatewayAccount.id)
    if name:
        query = query.where(GatewayAccount.name == name)
    return [fetch_account(account.id) for account in db.session.scalars(query).all()]


def fetch_account(account_id: int, *, now: datetime | None = None) -> FetchReport:
    """One run for one account: failed sales (cases), then sales and refunds (history), then planning."""
    account = db.session.get(GatewayAccount, account_id)
    if account is None:
        raise AccountError(f"no gateway account {account_id}")
    report = FetchReport(account=account.name)
    moment = now or utcnow()
    try:
        with fetch_lock(account_id):
            try:
                _fetch_window(account, report, moment)
            except (GatewayError, AccountError) as exc:
                db.session.rollback()
                report.ok, report.error = False, f"{type(exc).__name__}: {exc}"
                log.error("fetch of %s failed: %s", account.name, report.error)
                _note_cursor(account_id, FAILED_KIND, "error", report.error, report.result.seen)
            if report.ok:
                _fetch_sales(account, report.sales, moment)
            else:
                report.sales.skipped, report.sales.error = True, "the failed sales did not complete"
    except FetchBusy as exc:
        report.ok, report.error = False, str(exc)
    if report.result.case_ids:
        hand_to_planning(report.result.case_ids)
    return report


def _cursor(account_id: int, kind: str = FAILED_KIND) -> FetchCursor:
    cursor = db.session.scalar(
        sa.select(FetchCursor).where(FetchCursor.gateway_account_id == account_id, FetchCursor.kind == kind)
    )
    if cursor is None:
        cursor = FetchCursor(gateway_account_id=account_id, kind=kind)
        db.session.add(cursor)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return _cursor(account_id, kind)
    return cursor


def _window(cursor: FetchCursor, now: datetime, lookback_days: int) -> tuple[datetime, datetime]:
    overlap = timedelta(seconds=int(get_setting("fetch_overlap_seconds")))
    if cursor.position is None:
        since = now - timedelta(days=lookback_days)
    else:
        since = cursor.position - overlap
    # NMI's dates are whole seconds: the end rounds up, so what changed earlier in this very second is included
    # now rather than on the next run (what changes later in it is found again thanks to the overlap)
    until = now.replace(microsecond=0) + (timedelta(seconds=1) if now.microsecond else timedelta(0))
    return since, until


def _fetch_window(account: GatewayAccount, report: FetchReport, now: datetime) -> None:
    cursor = _cursor(account.id)
    report.cursor_before = cursor.position
    since, until = _window(cursor, now, int(get_setting("fetch_initial_lookback_days")))
    report.window = (since, until)
    gateway = gateway_for(account)
    ctx = ingest_context(account)
    for page in gateway.fetch_failed(since, until):
        report.pages += 1
        report.result.add(ingest_records(page.records, ctx))
        if page.closes:  # this time window is read whole and committed: the cursor may pass it
            report.cursor_after = _advance(account.id, FAILED_KIND, page.until, report.result.seen, now)


def _fetch_sales(account: GatewayAccount, report: SalesReport, now: datetime) -> None:
    """The sales window: approved sales and refunds since the ``sales`` cursor. Its own cursor and errors: a
    failure here keeps the sales cursor and leaves the failed sales (already committed) alone."""
    cursor = _cursor(account.id, SALES_KIND)
    report.cursor_before = cursor.position
    lookback = get_setting("sales_initial_lookback_days") or get_setting("fetch_initial_lookback_days")
    since, until = _window(cursor, now, int(lookback))
    report.window = (since, until)
    try:
        gateway = gateway_for(account)
        ctx = ingest_context(account)
        pages = gateway.fetch_sales(since, until)
        for page in pages:
            report.pages += 1
            report.result.add(ingest_sales(page.records, ctx))
            if page.closes:  # this time window is read whole and committed: the cursor may pass it
                report.cursor_after = _advance(account.id, SALES_KIND, page.until, report.result.seen, now)
    except NotImplementedError as exc:
        db.session.rollback()
        report.skipped, report.error = True, str(exc)
        return
    except (GatewayError, AccountError) as exc:
        db.session.rollback()
        report.ok, report.error = False, f"{type(exc).__name__}: {exc}"
        log.error("sales fetch of %s failed: %s", account.name, report.error)
        _note_cursor(account.id, SALES_KIND, "error", report.error, report.result.seen)
        return


#: the cursor stays this far behind the moment of the fetch, whatever was read: a row that reaches the gateway's
#: results late, with a modified time a little in the past, is read again by the next fetch (beside the overlap)
SAFETY_LAG = timedelta(seconds=60)


def _advance(account_id: int, kind: str, until: datetime, rows: int, now: datetime) -> datetime:
    """Move the cursor to ``until`` (a window read whole), never past ``now`` minus :data:`SAFETY_LAG` and never
    back. Commits; returns the position."""
    cursor = _cursor(account_id, kind)
    position = min(until, now.replace(microsecond=0) - SAFETY_LAG)
    if cursor.position is not None and _as_utc(cursor.position) > position:
        position = _as_utc(cursor.position)
    cursor.position = position
    cursor.last_run_at = utcnow()
    cursor.last_status = "ok"
    cursor.last_error = None
    cursor.rows_last_run = rows
    db.session.commit()
    return position


def _note_cursor(account_id: int, kind: str, status: str, error: str | None, rows: int) -> None:
    cursor = _cursor(account_id, kind)
    cursor.last_run_at = utcnow()
    cursor.last_status = status
    cursor.last_error = error
    cursor.rows_last_run = rows
    db.session.commit()


#: seconds before each new try of a planning job that failed
PLAN_RETRIES = (5, 30, 120)


def hand_to_planning(case_ids: list[int]) -> None:
    """New cases go to the planner, in batches, on the high queue; a batch whose job fails (the database away) is
    tried again after 5 s, 30 s and 2 min (and a case whose job was lost is planned by the dispatch job's sweep,
    :func:`app.recovery.planning.plan_stragglers`)."""
    queue = get_queue()
    for start in range(0, len(case_ids), 200):
        queue.enqueue(jobs.plan_cases, case_ids[start : start + 200], queue="high", retries=PLAN_RETRIES)
