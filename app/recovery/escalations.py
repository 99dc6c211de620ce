"""The escalation queue: cases handed to a team, assigned to a person, annotated and resolved. Audited."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from app.audit import record
from app.extensions import db
from app.models import EscalationTask, User
from app.models.types import utcnow


class EscalationState(StrEnum):
    """Where a team's escalation task is (not the case's state: its case is ``escalated`` all along)."""

    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


STATES: tuple[EscalationState, ...] = tuple(EscalationState)


class EscalationError(ValueError):
    pass


def queue(*, state: str | None = None, team: str | None = None) -> list[EscalationTask]:
    query = sa.select(EscalationTask)
    if state == "unresolved" or state is None:
        query = query.where(EscalationTask.state != EscalationState.RESOLVED)
    elif state in STATES:
        query = query.where(EscalationTask.state == state)
    if team:
        query = query.where(EscalationTask.team == team)
    return list(db.session.scalars(query.order_by(EscalationTask.created_at)))


def _task(task_id: int) -> EscalationTask:
    task = db.session.get(EscalationTask, task_id)
    if task is None:
        raise EscalationError(f"no escalation {task_id}")
    return task


def _append_note(task: EscalationTask, actor: User, text: str) -> None:
    line = f"[{utcnow():%Y-%m-%d %H:%M} UTC, {actor.name or actor.email}] {text.strip()}"
    task.note = f"{task.note}\n{line}" if task.note else line


def assign(task_id: int, assignee: User | None, *, actor: User) -> EscalationTask:
    task = _task(task_id)
    if task.state == EscalationState.RESOLVED:
        raise EscalationError("this escalation is already resolved")
    task.assigned_to_id = assignee.id if assignee else None
    task.state = EscalationState.ASSIGNED if assignee else EscalationState.OPEN
    record(actor.email, "escalation.assign", "escalation_task", task.id,
           {"case": task.case_id, "to": assignee.email if assignee else None})
    db.session.commit()
    return task


def add_note(task_id: int, text: str, *, actor: User) -> EscalationTask:
    if not text.strip():
        raise EscalationError("write a note first")
    task = _task(task_id)
    _append_note(task, actor, text[:2000])
    record(actor.email, "escalation.note", "escalation_task", task.id, {"case": task.case_id})
    db.session.commit()
    return task


def resolve(task_id: int, *, actor: User, note: str = "") -> EscalationTask:
    task = _task(task_id)
    if task.state == EscalationState.RESOLVED:
        raise EscalationError("this escalation is already resolved")
    if note.strip():
        _append_note(task, actor, note[:2000])
    task.state = EscalationState.RESOLVED
    task.resolved_at = utcnow()
    record(actor.email, "escalation.resolve", "escalation_task", task.id, {"case": task.case_id})
    db.session.commit()
    return task
