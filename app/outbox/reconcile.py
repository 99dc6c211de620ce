"""Rows a dead worker left, and outcomes nobody recorded: settled from what each channel can tell (see
:mod:`app.outbox`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.extensions import db
from app.models import MessageEvent, OutboxMessage
from app.models.types import utcnow
from app.outbox.batch import add_event, add_event_for
from app.outbox.senders import senders_for
from app.outbox.settings import setting
from app.outbox.states import IN_FLIGHT, OutboxState, check_move, sources
from app.outbox.states import OutboxState as S
from rules.vocabulary import CHANNELS, Channel, OutboxTask

log = logging.getLogger(__name__)


def reclaim_stale(now: datetime | None = None) -> int:
    """Rows whose owner's lease expired: back to the queue when nothing can have been sent (before the checkpoint),
    else ``unknown`` (SMS, WhatsApp: the provider is asked) or ``review`` (an email: SMTP cannot be asked)."""
    cutoff = utcnow() - timedelta(seconds=setting("DISPATCH_LEASE_SECONDS"))
    rows = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.channel, OutboxMessage.claimed_by)
        .where(OutboxMessage.state.in_(IN_FLIGHT), OutboxMessage.claimed_at < cutoff)
        .limit(5000)
    ).all()
    moved = 0
    for mid, state, channel, owner in rows:
        if channel not in CHANNELS:
            if channel != OutboxTask.ESCALATION:
                continue
            # creating the task is idempotent; at worst the team gets its notification twice
            target, why = S.SCHEDULED, "the worker stopped while escalating"
        elif state == S.CLAIMED:
            target, why = S.SCHEDULED, "the worker stopped before sending; nothing was sent"
        elif state == S.DELIVERING and channel == Channel.EMAIL:
            target, why = S.REVIEW, "the worker stopped after the end of DATA went out: the mail server may have it"
        elif state == S.DELIVERING:
            target, why = S.UNKNOWN, "the worker stopped with its request maybe on its way; asking the provider"
        elif channel == Channel.EMAIL:
            target, why = S.SCHEDULED, "the worker stopped before the end of DATA: the mail server dropped it"
        elif last_attempt(mid).get("checkpoint"):
            target, why = S.SCHEDULED, "the worker stopped before its checkpoint: the request never went out"
        else:  # left by a worker of a version before the checkpoint (an upgrade): its request may have gone
            target, why = S.UNKNOWN, "the worker stopped while sending; asking the provider before anything else"
        check_move(mid, state, target)
        changed = db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == mid, OutboxMessage.state == state, OutboxMessage.claimed_by == owner,
                   OutboxMessage.claimed_at < cutoff)
            .values(state=target, claimed_by=None if target == S.SCHEDULED else owner)
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            kind = {S.SCHEDULED: "reclaimed", S.UNKNOWN: "unknown", S.REVIEW: "review"}[target]
            add_event_for(mid, kind, {"why": why, "was": state, "worker": owner})
            moved += 1
    db.session.commit()
    return moved


def reconcile_unknown(now: datetime | None = None, *, limit: int = 500) -> dict[str, int]:
    """Settle ``unknown`` rows from the providers' own records; see the module docstring for each channel."""
    real_now = utcnow()
    cutoff = real_now - timedelta(seconds=setting("DISPATCH_LEASE_SECONDS"))
    review_after = timedelta(hours=setting("UNKNOWN_REVIEW_HOURS"))
    wa_wait = timedelta(seconds=setting("WHATSAPP_RECONCILE_SECONDS"))
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.state == S.UNKNOWN, OutboxMessage.channel.in_(CHANNELS),
               sa.or_(OutboxMessage.claimed_at.is_(None), OutboxMessage.claimed_at < cutoff))
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    counts: dict[str, int] = {}
    senders = senders_for(current_app._get_current_object()) if rows else {}  # type: ignore[attr-defined]
    for row in rows:
        attempt = last_attempt(row.id)
        started = parse_time(attempt.get("started_at")) or row.updated_at or real_now
        outcome = "unresolved"
        if row.channel == Channel.EMAIL:
            outcome = _settle(row, S.REVIEW, "review", {"why": "an email's outcome cannot be looked up over SMTP"})
        elif row.channel == Channel.SMS and Channel.SMS in senders and attempt.get("body"):
            try:
                found = senders[Channel.SMS].find_message(  # type: ignore[attr-defined]
                    attempt["to"], attempt["body"], since=started, from_=attempt.get("from")
                )
            except Exception as exc:  # the lookup failing settles nothing; the next pass asks again
                log.warning("Twilio lookup for message %s failed: %s", row.id, exc)
            else:
                if found is not None:
                    outcome = _settle(row, S.SENT, "reconciled", {"found": True, "sid": found.get("sid")},
                                      provider_message_id=str(found.get("sid")), sent_at=real_now)
                else:
                    outcome = _settle(row, S.SCHEDULED, "reconciled",
                                      {"found": False, "why": "Twilio has no such message: sending again"},
                                      claimed_by=None)
        elif row.channel == Channel.WHATSAPP and real_now - started >= wa_wait and _whatsapp_webhooks_after(
            started + wa_wait, row.id
        ):
            # Meta may hold it (a status can be lost or late however well the pipe works) and cannot be asked:
            # never sent again by itself; a person decides, and a status that comes later still settles it
            outcome = _settle(row, S.REVIEW, "review",
                              {"why": "no status webhook for it while later ones arrived: Meta may or may not have "
                                      "it, and the Cloud API cannot be asked"})
        if outcome == "unresolved" and real_now - started >= review_after:
            outcome = _settle(row, S.REVIEW, "review", {"why": "the provider could not tell us in time"})
        counts[outcome] = counts.get(outcome, 0) + 1
        db.session.commit()
    return {f"reconcile_{k}": v for k, v in counts.items() if k != "unresolved"}


def _settle(row: OutboxMessage, state: OutboxState, kind: str, payload: dict[str, Any], **values: Any) -> str:
    changed = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.state.in_(sources(state, among={S.UNKNOWN})))
        .values(state=state, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return "unresolved"
    add_event_for(row.id, kind, payload)
    return {S.SCHEDULED: "resend", S.SENT: "found"}.get(state, state.value)


def _whatsapp_webhooks_after(after: datetime, except_id: int) -> bool:
    """Have delivery webhooks reached us for other WhatsApp messages *sent* after ``after``? Then the webhook pipe
    was working and had caught up past ours. (Statuses arriving late for messages older than that prove nothing: a
    lagging pipe delivers them while ours is still on its way.)"""
    return (
        db.session.scalar(
            sa.select(MessageEvent.id)
            .join(OutboxMessage, OutboxMessage.id == MessageEvent.message_id)
            .where(OutboxMessage.channel == Channel.WHATSAPP, OutboxMessage.id != except_id,
                   OutboxMessage.sent_at > after,
                   MessageEvent.kind.in_(("delivered", "read")), MessageEvent.recorded_at > after)
            .limit(1)
        )
        is not None
    )


def last_attempt(message_id: int) -> dict[str, Any]:
    event = db.session.scalar(
        sa.select(MessageEvent)
        .where(MessageEvent.message_id == message_id, MessageEvent.kind == "attempt")
        .order_by(MessageEvent.id.desc())
        .limit(1)
    )
    return dict(event.provider_payload or {}) if event is not None else {}


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fall_back_undelivered_whatsapp(now: datetime) -> int:
    """WhatsApp messages sent but not delivered within the timeout: their step moves on to its next channel."""
    from app.outbox.delivery import fall_back_later, fallback_key

    timeout = timedelta(minutes=setting("WHATSAPP_DELIVERY_TIMEOUT_MINUTES"))
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.channel == Channel.WHATSAPP, OutboxMessage.state == S.SENT,
               OutboxMessage.sent_at <= now - timeout, OutboxMessage.sent_at > now - timeout - timedelta(days=2),
               OutboxMessage.case_id.is_not(None))
        .limit(500)
    ).all()
    rows = [r for r in rows if r.fallbacks]
    if not rows:
        return 0
    keys = {fallback_key(r): r for r in rows}
    done = set(db.session.scalars(sa.select(OutboxMessage.idempotency_key)
                                  .where(OutboxMessage.idempotency_key.in_(list(keys)))))
    moved = 0
    for key, row in keys.items():
        if key in done:
            continue
        if fall_back_later(row, why=f"not delivered within {timeout}", at=now):
            add_event(row, "not_delivered", {"after_minutes": timeout.total_seconds() / 60, "to": row.fallbacks[0]})
            moved += 1
    db.session.commit()
    return moved
