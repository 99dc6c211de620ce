"""Recoup's own charges, when the gateway reports them back.

Every charge Recoup makes (the payment page's attempts, declined or not, smart retries, a part payment and the
rest, a payment the customer put off) is a ``Payment`` row committed *before* the gateway is called, with an
``order_id`` unique to that attempt (``rc<case>-...``) that the gateway echoes back in the Query API and in
webhooks; the gateway's transaction id is recorded on the row as soon as it answers. So a fetched or pushed
transaction is ours when its order id, or its transaction id, is one of our payments' in the same gateway
account, whatever order the fetch, the webhook and the charge's answer arrive in.

Ingest uses this to keep our own attempts out of the failed payments: they are the case's payment history
(its ``Payment`` rows), never a new failure, never a new case. No Flask here; the caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.gateways.base import FailedTransaction, SaleTransaction
from app.models import Payment, RecoveryCase, Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnCharge:
    """A gateway transaction that is one of Recoup's charges: which attempt, of which case."""

    payment_id: int
    case_id: int
    order_id: str
    state: str  # the attempt's state as Recoup has it (pending|approved|declined|error|unknown)


def own_charges(
    records: Iterable[FailedTransaction | SaleTransaction], account_id: int
) -> dict[str, OwnCharge]:
    """Which of ``records`` are Recoup's own charges, keyed by their gateway transaction id."""
    records = list(records)
    if not records:
        return {}
    base = (
        sa.select(Payment.id, Payment.case_id, Payment.order_id, Payment.gateway_transaction_id, Payment.state)
        .join(RecoveryCase, RecoveryCase.id == Payment.case_id)
        .join(Transaction, Transaction.id == RecoveryCase.transaction_id)
        .where(Transaction.gateway_account_id == account_id)
    )
    orders = {r.order_id for r in records if r.order_id}
    by_order: dict[str, sa.Row[Any]] = {}
    if orders:
        by_order = {row.order_id: row for row in db.session.execute(base.where(Payment.order_id.in_(orders)))}
    txn_ids = {r.gateway_transaction_id for r in records}
    by_txn = {
        row.gateway_transaction_id: row
        for row in db.session.execute(base.where(Payment.gateway_transaction_id.in_(txn_ids)))
    }
    found: dict[str, OwnCharge] = {}
    for record in records:
        row = by_txn.get(record.gateway_transaction_id) or by_order.get(record.order_id or "")
        if row is not None:
            found[record.gateway_transaction_id] = OwnCharge(row.id, row.case_id, row.order_id, row.state)
    return found


def note_own_charges(records: Iterable[FailedTransaction | SaleTransaction], own: dict[str, OwnCharge]) -> None:
    """Log what was recognised (at debug: a fetch window overlaps the last, so they come back more than once)."""
    for record in records:
        charge = own.get(record.gateway_transaction_id)
        if charge is not None:
            log.debug(
                "%s transaction %s (order %s) is Recoup's own charge: payment %s of case %s (%s); not a new failure",
                record.gateway, record.gateway_transaction_id, record.order_id, charge.payment_id, charge.case_id,
                charge.state,
            )
