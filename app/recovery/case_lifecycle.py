"""Time-driven case work: escalations fall due, cases past their give-up time expire."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import EscalationTask, MessageEvent, OutboxMessage, RecoveryCase, Team
from app.models.types import utcnow
from app.outbox.states import WAITING, OutboxState, sources
from app.recovery.cases import move_case
from app.recovery.escalations import EscalationState
from rules.case_states import ACTIVE, CaseState
from rules.vocabulary import OutboxTask

log = logging.getLogger(__name__)


def run_due_escalations(now: datetime | None = None, limit: int = 200) -> int:
    """Escalation rows that are due create a task for the team (once per case and team) and tell the team."""
    now = now or utcnow()
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(
            OutboxMessage.channel == OutboxTask.ESCALATION,
            OutboxMessage.state == OutboxState.SCHEDULED,
            OutboxMessage.scheduled_for <= now,
        )
        .limit(limit)
    ).all()
    done = 0
    for row in rows:
        claimed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == row.id,
                   OutboxMessage.state.in_(sources(OutboxState.SENDING, among={OutboxState.SCHEDULED})))
            .values(state=OutboxState.SENDING, claimed_at=utcnow())  # a lease on the real clock (app.outbox)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        if not claimed:
            continue
        case = db.session.get(RecoveryCase, row.case_id)
        if case is None or case.state not in ACTIVE:
            _finish(row, OutboxState.CANCELLED, {"why": f"case is {case.state if case else 'gone'}"})
            continue
        if case.paused_at is not None:  # held with the case's other messages until it is resumed
            _finish(row, OutboxState.PAUSED, {"why": f"case paused by {case.paused_by or '?'}"})
            continue
        team = row.address or "operations"
        exists = db.session.scalar(
            sa.select(EscalationTask.id).where(EscalationTask.case_id == case.id, EscalationTask.team == team)
        )
        if exists is None:
            db.session.add(EscalationTask(case_id=case.id, team=team, state=EscalationState.OPEN))
        if case.state != CaseState.ESCALATED:
            move_case(case, CaseState.ESCALATED, reason=f"escalated to {team} by policy", actor="policy")
        case.escalated_to = team
        notified = _notify_team(team, case)
        _finish(row, OutboxState.SENT, {"team": team, "notified": notified})
        done += 1
    return done


def _finish(row: OutboxMessage, state: OutboxState, payload: dict[str, Any]) -> None:
    row.state = state
    if state == OutboxState.SENT:
        row.sent_at = utcnow()
    db.session.add(MessageEvent(message_id=row.id, kind=state, provider_payload=payload))
    db.session.commit()


def _notify_team(team_name: str, case: RecoveryCase) -> str | None:
    from flask import current_app

    from app.channels.base import Channel, OutboundMessage
    from app.outbox.senders import senders_for
    from app.payments.money import format_minor

    team = db.session.scalar(sa.select(Team).where(Team.name == team_name))
    sender = senders_for(current_app._get_current_object()).get(Channel.EMAIL)  # type: ignore[attr-defined]
    if team is None or not team.email or sender is None:
        return None
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    text = (
        f"Case {case.id} ({format_minor(case.amount_due_minor, case.currency)}) was escalated to {team_name} "
        f"by the recovery policy.\n\nOpen it: {base}/admin/cases/details/?id={case.id}\n"
    )
    result = sender.send(
        OutboundMessage(
            channel=Channel.EMAIL,
            to=team.email,
            reference=f"esc{case.id}",
            subject=f"Escalated: case {case.id}",
            text=text,
        )
    )
    return team.email if result.accepted else None


def expire_due_cases(now: datetime | None = None, limit: int = 500) -> int:
    """Cases past their give-up time expire; what they still had scheduled is cancelled, their links revoked."""
    from app.payments.links import revoke_case_links

    now = now or utcnow()
    cases = db.session.scalars(
        sa.select(RecoveryCase)
        .where(RecoveryCase.state.in_(ACTIVE), RecoveryCase.give_up_at.is_not(None), RecoveryCase.give_up_at <= now,
               RecoveryCase.paused_at.is_(None))  # a paused case's clock stops (resuming moves its give-up time)
        .limit(limit)
    ).all()
    for case in cases:
        move_case(case, CaseState.EXPIRED, reason="the policy's give-up time passed", actor="policy", at=now)
        cancel_pending(case.id, "case expired")
        revoke_case_links(case.id, now=now)
    db.session.commit()
    return len(cases)


def cancel_pending(case_id: int, why: str) -> int:
    """Everything of the case that has not gone yet (scheduled, held, or held by a pause) is cancelled."""
    rows = db.session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.case_id == case_id,
                                       OutboxMessage.state.in_(sources(OutboxState.CANCELLED, among=WAITING)))
    ).all()
    for row in rows:
        row.state = OutboxState.CANCELLED
        db.session.add(MessageEvent(message_id=row.id, kind="cancelled", provider_payload={"why": why}))
    return len(rows)
