"""Recording what the providers answered, a batch in one transaction.

What can never go as it is waits for a person, never for a retry: a message our builder refused (``unbuildable``,
:mod:`app.outbox.send`) goes to ``review`` after its one attempt, and so does one a provider refused for good when no
fallback channel is left (but an opt-out, which is the customer's answer, fails it)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from app.channels.base import SendResult
from app.extensions import db
from app.models import OutboxMessage, RecoveryCase
from app.models.types import utcnow
from app.ops.metrics import count_send
from app.outbox.batch import Attempted, BatchRows, Ready, add_event, add_event_for, rows_written_together
from app.outbox.send import UNBUILDABLE
from app.outbox.states import ON_THE_WAY, SENT_STATES, sources
from app.outbox.states import OutboxState as S
from app.recovery.cases import move_cases
from rules.case_states import CaseState
from rules.vocabulary import Channel

RETRY_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))

MAX_ATTEMPTS = 6


def record_batch(attempts: list[Attempted], now: datetime) -> dict[int, str]:
    """Record what the providers answered, in one transaction. ``fallback``: the row was moved to its next
    channel and is still claimed (prepare it again)."""
    with rows_written_together() as rows:
        return _record_rows(attempts, now, rows)


def _record_rows(attempts: list[Attempted], now: datetime, rows_added: BatchRows) -> dict[int, str]:
    outcomes = {a.ready.message_id: a.outcome for a in attempts if a.result is None}
    todo = [a for a in attempts if a.result is not None]
    if not todo:
        return outcomes  # type: ignore[return-value]
    sent = [a for a in todo if a.result.accepted]  # type: ignore[union-attr]
    failed = sorted((a for a in todo if not a.result.accepted), key=lambda a: a.ready.message_id)  # type: ignore[union-attr]
    rows = {
        m.id: m
        for m in db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.id.in_([a.ready.message_id for a in failed]))
            .order_by(OutboxMessage.id).with_for_update().execution_options(populate_existing=True)
        )
    } if failed else {}
    for a in failed:
        message = rows.get(a.ready.message_id)
        outcomes[a.ready.message_id] = (
            "gone" if message is None else record_failure(message, a.ready, a.result, now)  # type: ignore[arg-type]
        )
    outcomes.update({a.ready.message_id: "sent" for a in sent})
    record_sent(sent)
    rows_added.write()
    db.session.commit()
    for a in todo:  # counted once recorded (app.ops.metrics)
        count_send(a.ready.channel, a.result.outcome)  # type: ignore[union-attr]
    return outcomes  # type: ignore[return-value]


def record_sent(sent: list[Attempted]) -> None:
    """The provider has these messages. The truth wins whoever holds a row (a status webhook may already be
    ahead of us): ``sent`` unless a later state is known, the provider's id, a ``sent`` event each, and their
    cases move from ``open`` to ``contacting``. Set-based: a few statements per batch, none per row."""
    if not sent:
        return
    provider_ids = {a.ready.message_id: a.result.provider_message_id for a in sent}  # type: ignore[union-attr]
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(sorted(provider_ids)))
        .values(
            state=sa.case((OutboxMessage.state.in_(sources(S.SENT)), S.SENT.value), else_=OutboxMessage.state),
            sent_at=sa.func.coalesce(OutboxMessage.sent_at, utcnow()),
            provider_message_id=sa.case(provider_ids, value=OutboxMessage.id),
            error_code=None,
            error_text=None,
        )
        .execution_options(synchronize_session=False)
    )
    for a in sent:
        result = a.result
        assert result is not None
        add_event_for(a.ready.message_id, "sent", {
            "channel": a.ready.channel, "outcome": result.outcome, "error_code": None, "error_text": None,
            "attempts": result.attempts, "provider_message_id": result.provider_message_id,
        })
    why = {a.ready.case_id: f"{a.ready.channel} message {a.ready.message_id} sent" for a in reversed(sent)
           if a.ready.case_id is not None}
    if why:
        cases = db.session.execute(
            sa.select(RecoveryCase.id, RecoveryCase.state)
            .where(RecoveryCase.id.in_(sorted(why)), RecoveryCase.state == CaseState.OPEN).with_for_update()
        ).all()
        move_cases(cases, CaseState.CONTACTING, reasons={c.id: why[c.id] for c in cases})


def record_failure(message: OutboxMessage, ready: Ready, result: SendResult, now: datetime) -> str:
    """A provider answer that is not an acceptance, onto its (locked) row; returns the outcome (``fallback``:
    prepare it again)."""
    channel = ready.channel
    payload = {
        "channel": channel,
        "outcome": result.outcome,
        "error_code": result.error_code,
        "error_text": result.error_text,
        "attempts": result.attempts,
    }
    ours = message.claimed_by == ready.owner and message.state in ON_THE_WAY
    if message.state in SENT_STATES:  # a status webhook (or the answer to the dot) already proved it went
        add_event(message, "late_result", {**payload, "state": message.state})
        return "sent"
    if not ours:
        add_event(message, "late_result", {**payload, "state": message.state})
        return "lost"
    message.error_code = (result.error_code or "")[:32] or None
    message.error_text = (result.error_text or "")[:500] or None
    if result.error_code == UNBUILDABLE:  # the same row would build the same message: a person fixes it first
        message.state = S.REVIEW
        add_event(message, "review", {**payload, "why": f"{result.error_text}; it is not sent again until someone "
                                                        "corrects the customer's details or the template"})
        return "review"
    if result.unknown:
        if channel == Channel.EMAIL:
            message.state = S.REVIEW
            add_event(message, "review", {**payload, "why": "connection lost after the end of DATA"})
            return "review"
        message.state = S.UNKNOWN
        add_event(message, "unknown", payload)
        return "unknown"
    if result.permanent:
        add_event(message, "failed", payload)
        if result.opted_out and message.customer_id:
            from app.outbox.consent import opt_out

            opt_out(message.customer_id, [channel], source="provider", detail=result.error_code)
        if message.fallbacks:
            message.channel, message.fallbacks = message.fallbacks[0], list(message.fallbacks[1:])
            message.state = S.CLAIMED
            add_event(message, "fallback", {"to": message.channel, "after": channel})
            return "fallback"
        if result.opted_out:
            message.state = S.FAILED
            return "failed"
        message.state = S.REVIEW  # an address or content the provider will never take: not retried, a person looks
        refusal = " ".join(filter(None, (result.error_code, result.error_text))) or "no reason given"
        add_event(message, "review", {**payload, "why": f"{channel} refused it for good ({refusal[:300]}) and no "
                                                        "other channel is left"})
        return "review"
    if result.retryable and message.attempts < MAX_ATTEMPTS:
        wait_for = RETRY_BACKOFF[min(message.attempts - 1, len(RETRY_BACKOFF) - 1)]
        if result.retry_after:
            wait_for = max(wait_for, timedelta(seconds=result.retry_after))
        message.state = S.SCHEDULED
        message.claimed_by = None
        message.scheduled_for = now + wait_for
        add_event(message, "retry", {**payload, "at": (now + wait_for).isoformat()})
        return "retry"
    message.state = S.FAILED
    add_event(message, "failed", payload)
    return "failed"
