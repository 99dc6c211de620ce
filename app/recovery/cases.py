"""Recovery cases: opening one per failed payment, and moving it through its states with every move recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.models import CaseTransition, RecoveryCase, Transaction
from app.models.types import utcnow
from rules.case_states import TERMINAL, CaseState, check_transition


def open_case(transaction: Transaction, *, actor: str = "system") -> tuple[RecoveryCase, bool]:
    """The case for this failed payment, created if there is none yet. Returns (case, created)."""
    existing = db.session.scalar(sa.select(RecoveryCase).where(RecoveryCase.transaction_id == transaction.id))
    if existing is not None:
        return existing, False
    case = RecoveryCase(
        transaction_id=transaction.id,
        customer_id=transaction.customer_id,
        state=CaseState.OPEN.value,
        amount_due_minor=transaction.amount_minor,
        currency=transaction.currency,
    )
    db.session.add(case)
    db.session.flush()
    db.session.add(
        CaseTransition(
            case_id=case.id,
            from_state=None,
            to_state=CaseState.OPEN.value,
            reason=f"payment {transaction.gateway_transaction_id} failed",
            actor=actor,
        )
    )
    return case, True


def move_case(
    case: RecoveryCase, to_state: str, *, reason: str, actor: str = "system", at: datetime | None = None
) -> CaseTransition:
    new = check_transition(case.state, to_state)
    transition = CaseTransition(
        case_id=case.id, from_state=case.state, to_state=new.value, reason=reason, actor=actor, at=at or utcnow()
    )
    case.state = new.value
    if new in TERMINAL:
        case.closed_at = transition.at
    db.session.add(transition)
    return transition


def move_cases(
    cases: Sequence[RecoveryCase] | Sequence[sa.Row[tuple[int, str]]], to_state: str, *, reasons: dict[int, str],
    actor: str = "system",
) -> None:
    """:func:`move_case` for many cases in one statement per starting state, and one INSERT for their
    transitions. The caller holds their rows (e.g. ``FOR UPDATE``). ``cases``: ORM cases (updated in place) or
    ``(id, state)`` rows: the dispatcher moves a batch's cases to ``contacting`` this way."""
    at = utcnow()
    by_state: dict[str, list[int]] = {}
    for case in cases:
        check_transition(case.state, to_state)
        by_state.setdefault(case.state, []).append(case.id)
    new = CaseState(to_state)
    values: dict[str, object] = {"state": new.value, "updated_at": at}
    if new in TERMINAL:
        values["closed_at"] = at
    transitions = []
    for from_state, ids in by_state.items():
        db.session.execute(
            sa.update(RecoveryCase)
            .where(RecoveryCase.id.in_(ids), RecoveryCase.state == from_state)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        transitions += [{"case_id": case_id, "from_state": from_state, "to_state": new.value,
                         "reason": reasons.get(case_id, ""), "actor": actor, "at": at} for case_id in ids]
    if transitions:
        db.session.execute(sa.insert(CaseTransition.__table__), transitions)
    for case in cases:
        if isinstance(case, RecoveryCase):
            for key, value in values.items():
                set_committed_value(case, key, value)
