"""The whole story of one recovery case, oldest first: state changes, the plan and the policy line behind each
step, every message and its events (a deferral with its reasons and the rule behind each), payment links opened,
payments, escalations, and what operators did to the case. Read-only; no Flask needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import (
    AuditEntry,
    CaseTransition,
    EscalationTask,
    OutboxMessage,
    Payment,
    PaymentLink,
    PolicyVersion,
    RecoveryCase,
)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # state|plan|message|event|link|payment|escalation|action
    title: str
    detail: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # keeps entries of the same instant in a stable, sensible order


def case_timeline(case: RecoveryCase) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    for t in db.session.scalars(sa.select(CaseTransition).where(CaseTransition.case_id == case.id)):
        entries.append(TimelineEntry(t.at, "state", t.to_state,
                                     {"from": t.from_state, "reason": t.reason, "actor": t.actor}, 0))
    version = db.session.get(PolicyVersion, case.policy_version_id) if case.policy_version_id else None
    if case.plan:
        entries.append(TimelineEntry(case.opened_at, "plan", "planned", {
            "policy": version.policy.name if version else case.plan.get("policy"),
            "version": version.number if version else case.plan.get("version"),
            "version_id": version.id if version else None,
            "segment": case.plan.get("segment"), "priority": case.plan.get("priority"),
            "decline_reason": case.plan.get("decline_reason"), "timezone": case.plan.get("timezone"),
            "offers": case.plan.get("offers") or [], "steps": case.plan.get("steps") or [],
            "give_up_after": case.plan.get("give_up_after"), "holdout": bool(case.plan.get("holdout")),
            "override": case.plan.get("override"), "experiment": _experiment(case),
        }, 1))
    messages = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id)
                                  .order_by(OutboxMessage.scheduled_for)).all()
    for m in messages:
        entries.append(TimelineEntry(m.sent_at or m.scheduled_for, "message", m.channel, {
            "id": m.id, "step": m.step_n, "state": m.state, "template": m.template, "variant": m.variant,
            "scheduled_for": m.scheduled_for, "sent_at": m.sent_at, "deferred_by": m.deferred_by or [],
            "rule_line": m.rule_line, "policy_version_id": m.policy_version_id,
            "error": m.error_text, "fallbacks": m.fallbacks or [], "override": m.contact_override,
        }, 2))
        for e in m.events:
            entries.append(TimelineEntry(e.occurred_at, "event", e.kind, _event_detail(m, e.provider_payload), 3))
    for link in db.session.scalars(sa.select(PaymentLink).where(PaymentLink.case_id == case.id)):
        entries.append(TimelineEntry(link.created_at, "link", "created", {"expires_at": link.expires_at}, 4))
        if link.first_opened_at:
            entries.append(TimelineEntry(link.first_opened_at, "link", "opened",
                                         {"count": link.open_count, "last": link.last_opened_at}, 4))
    for p in db.session.scalars(sa.select(Payment).where(Payment.case_id == case.id)):
        entries.append(TimelineEntry(p.completed_at or p.created_at, "payment", p.state, {
            "amount_minor": p.amount_minor, "currency": p.currency, "method": p.method,
            "response": p.response_text, "message_id": p.message_id}, 5))
    for task in db.session.scalars(sa.select(EscalationTask).where(EscalationTask.case_id == case.id)):
        entries.append(TimelineEntry(task.created_at, "escalation", task.state,
                                     {"team": task.team, "id": task.id, "note": task.note}, 6))
    for action in db.session.scalars(sa.select(AuditEntry).where(AuditEntry.target_type == CASE_TARGET,
                                                                 AuditEntry.target_id == str(case.id))):
        if action.action.startswith("case."):
            entries.append(TimelineEntry(action.at, "action", action.action.removeprefix("case."),
                                         {"actor": action.actor, **(action.details or {})}, 7))
    return sorted(entries, key=lambda e: (e.at, e.order))


#: the audit log's target type for a case: operators' actions on it are read back from there
CASE_TARGET = "recovery_case"
#: what an event's payload may add to the timeline (a deferral's reasons and their rules, the override, why...)
_SHOWN = ("until", "reasons", "held_by", "override", "why", "by", "to", "at", "send_at")


def _event_detail(message: OutboxMessage, payload: dict[str, Any] | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"message_id": message.id, "channel": message.channel}
    detail.update({k: v for k, v in (payload or {}).items() if k in _SHOWN})
    if "channel" in (payload or {}):
        detail["channel"] = payload["channel"]  # type: ignore[index]
    return detail


def _experiment(case: RecoveryCase) -> dict[str, Any] | None:
    """The experiment arm the plan drew for this case, with the experiment's id when the case counts in it (a case
    sent to the control because its arm was stopped counts nowhere: ``counted`` False)."""
    drawn = (case.plan or {}).get("experiment")
    if not drawn:
        return None
    from app.models import ArmAssignment

    experiment_id = db.session.scalar(sa.select(ArmAssignment.experiment_id).where(ArmAssignment.case_id == case.id))
    return {"name": drawn.get("experiment"), "arm": drawn.get("arm"), "reassigned_from": drawn.get("reassigned_from"),
            "experiment_id": experiment_id}
