"""Which case a newly stored failed payment belongs to, when its order may already have one.

Merchants reuse an order id for a subscription's renewals, and gateways and merchants retry a failed order, so a
failure can name an order Recoup has seen fail before. Each failure gets one of three answers, never none:

- **open a case**: its order has no case yet, or its order's case is closed (recovered, expired, cancelled) and
  this is a new failure (later than the case's close and, unless the amount differs, at least
  :data:`SAME_PAYMENT_WINDOW` after the failure that case was about). The new case's first transition names the
  earlier case.
- **join the open case** of its order (another failure of a payment still being recovered): stored, attached to
  that case, and the case gets a transition that says so, with the gateway transaction id.
- **attach to the closed case** of its order when it is that case's payment failing again (it failed before the
  case closed, or within the window with the same amount: a retry reported late, or a retry of a payment the
  customer already made): no new case, nobody is dunned for a payment that is settled; the case says so.

The transitions are ``CaseTransition`` rows that keep the case's state (from = to) and carry the reason, so the
case timeline shows them with the case's other moves. No Flask here; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import CaseTransition, RecoveryCase, Transaction
from app.payments.money import format_minor
from rules.case_states import ACTIVE

#: a failure of a closed case's order this soon after that case's own failure, for the same amount, is a retry
#: of the same payment, not a renewal (the simulator's and most gateways' retries come within a week)
SAME_PAYMENT_WINDOW = timedelta(days=7)
ACTOR = "ingest"
_OPEN = frozenset(state.value for state in ACTIVE)


@dataclass
class _Prior:
    """The case an order has: an existing one (``case_id``) or one opened in this chunk (``opening_tx``)."""

    state: str
    failed_at: datetime
    amount_minor: int
    closed_at: datetime | None = None
    case_id: int | None = None
    opening_tx: int | None = None

    @property
    def open(self) -> bool:
        return self.state in _OPEN


@dataclass
class Decisions:
    """What to do with a chunk's new failures (transaction rows as ``app.ingest.transactions`` inserts them, with
    ids)."""

    opening: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # opening transaction id -> first transition's reason
    joins: list[tuple[dict[str, Any], _Prior]] = field(default_factory=list)


def decide(transactions: list[dict[str, Any]], account_id: int) -> Decisions:
    """One answer per failure (see the module's doc), oldest first, so a chunk's own failures chain correctly.
    An approval that came in as "failed" (no decline kind) opens and joins nothing."""
    candidates = sorted((tx for tx in transactions if tx["decline_kind"] is not None), key=lambda t: t["failed_at"])
    priors = _cases_by_order({tx["order_id"] for tx in candidates if tx["order_id"]}, account_id)
    decisions = Decisions()
    for tx in candidates:
        order = tx["order_id"]
        prior = priors.get(order) if order else None
        if prior is not None and (prior.open or _same_payment(tx, prior)):
            decisions.joins.append((tx, prior))
            continue
        decisions.opening.append(tx)
        decisions.reasons[tx["id"]] = _opening_reason(tx, prior)
        if order:
            priors[order] = _Prior("open", _utc(tx["failed_at"]), tx["amount_minor"], opening_tx=tx["id"])
    return decisions


def record_joins(decisions: Decisions, case_ids: dict[int, int], at: datetime) -> list[int]:
    """Attach each joining failure to its case and tell the case; ``case_ids`` maps the chunk's opening
    transactions to the cases just opened for them. Returns the ids of the cases that were told."""
    if not decisions.joins:
        return []
    by_case: dict[int, list[int]] = {}
    transitions = []
    for tx, prior in decisions.joins:
        case_id = prior.case_id if prior.case_id is not None else case_ids[prior.opening_tx or 0]
        by_case.setdefault(case_id, []).append(tx["id"])
        transitions.append({"case_id": case_id, "from_state": prior.state, "to_state": prior.state,
                            "reason": _join_reason(tx, prior), "actor": ACTOR, "at": at})
    for case_id, tx_ids in by_case.items():
        db.session.execute(
            sa.update(Transaction).where(Transaction.id.in_(tx_ids)).values(joined_case_id=case_id)
            .execution_options(synchronize_session=False)
        )
    db.session.execute(CaseTransition.__table__.insert(), transitions)
    return sorted(by_case)


def _cases_by_order(orders: set[str], account_id: int) -> dict[str, _Prior]:
    """Each order's case: its open one if it has one, else its latest."""
    if not orders:
        return {}
    found: dict[str, _Prior] = {}
    for order, case_id, state, closed_at, failed_at, amount in db.session.execute(cases_of_orders(orders, account_id)):
        prior = _Prior(state, _utc(failed_at), int(amount), _utc(closed_at) if closed_at else None, case_id=case_id)
        current = found.get(order)
        if current is None or prior.open or not current.open:
            found[order] = prior
    return found


def cases_of_orders(orders: set[str], account_id: int) -> sa.Select[Any]:
    """The cases of the account's transactions with these order ids, oldest case first."""
    return (
        sa.select(Transaction.order_id, RecoveryCase.id, RecoveryCase.state, RecoveryCase.closed_at,
                  Transaction.failed_at, Transaction.amount_minor)
        .join(RecoveryCase, RecoveryCase.transaction_id == Transaction.id)
        .where(Transaction.gateway_account_id == account_id, Transaction.order_id.in_(orders))
        .order_by(RecoveryCase.id)
        # MariaDB scans every transaction for a chunk's few hundred orders unless told: ingest slowed with each
        # one stored (a chunk of 500 took 0.3 s at 100,000 transactions, 10 ms with the index)
        .with_hint(Transaction, "FORCE INDEX (ix_transactions_order)", dialect_name="mysql")
    )


def _same_payment(tx: dict[str, Any], prior: _Prior) -> bool:
    """Is this failure of a closed case's order that case's own payment failing again (not a new one)?"""
    failed_at = _utc(tx["failed_at"])
    if prior.closed_at is None or failed_at <= prior.closed_at:
        return True
    return failed_at - prior.failed_at < SAME_PAYMENT_WINDOW and tx["amount_minor"] == prior.amount_minor


def _what(tx: dict[str, Any]) -> str:
    code = f", code {tx['decline_code']}" if tx.get("decline_code") else ""
    return (f"{tx['gateway']} transaction {tx['gateway_transaction_id']} of order {tx['order_id']} "
            f"({format_minor(tx['amount_minor'], tx['currency'])}{code}, "
            f"{_utc(tx['failed_at']):%Y-%m-%d %H:%M} UTC)")


def _join_reason(tx: dict[str, Any], prior: _Prior) -> str:
    if prior.open:
        return f"another failure joined this case: {_what(tx)}"[:255]
    return (f"a failure of this case's payment arrived after the case was {prior.state}: {_what(tx)}; "
            "no new case")[:255]


def _opening_reason(tx: dict[str, Any], prior: _Prior | None) -> str:
    if prior is None:
        return "payment failed"
    return (f"payment failed: a new failure of order {tx['order_id']}, whose earlier case #{prior.case_id} "
            f"is {prior.state}; {_what(tx)}")[:255]


def _utc(moment: datetime) -> datetime:
    if isinstance(moment, str):  # read back without its column type
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
