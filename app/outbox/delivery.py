"""What providers tell us after a send: delivery statuses, replies, opt-outs. Every event is a row."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.channels.base import DeliveryStatus, InboundMessage, Keyword, StatusUpdate
from app.extensions import db
from app.models import MessageEvent, OutboxMessage
from app.outbox.consent import customers_with_phone, opt_in, opt_out, skip_scheduled
from app.outbox.senders import message_id_from_reference
from app.outbox.states import OutboxState
from rules.vocabulary import PHONE_CHANNELS, Channel

log = logging.getLogger(__name__)

S = OutboxState
#: states a status update may move a message out of (the highest status seen wins; see DeliveryStatus.rank)
STATUS_STATES = frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.UNKNOWN, S.SENDING, S.REVIEW})
#: a status for a row in one of these proves the provider took the message
UNSETTLED = frozenset({S.UNKNOWN, S.SENDING, S.REVIEW})
#: the states a provider's status names (the others are ours alone)
_STATUS_NAMED = frozenset(S(s.value) for s in DeliveryStatus if s.value in S.__members__.values())


def find_message(update: StatusUpdate) -> OutboxMessage | None:
    if update.reference:
        mid = message_id_from_reference(update.reference)
        if mid is not None:
            return db.session.get(OutboxMessage, mid)
    if update.provider_message_id:
        return db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.provider_message_id == update.provider_message_id)
        ).first()
    return None


def apply_status(update: StatusUpdate) -> OutboxMessage | None:
    message = find_message(update)
    if message is None:
        log.info(
            "status %s for unknown message %s/%s ignored", update.status, update.reference, update.provider_message_id
        )
        return None
    db.session.add(
        MessageEvent(
            message_id=message.id,
            kind=update.status.value,
            occurred_at=update.timestamp or datetime.now(UTC),
            provider_payload={
                "provider_message_id": update.provider_message_id,
                "error_code": update.error_code,
                "error_text": update.error_text,
                "raw": dict(update.raw),
            },
        )
    )
    if message.state in UNSETTLED and not update.status.is_failure:
        # the provider did take it (a worker may have died before it could record so): this settles the row
        message.state = S.SENT
        message.sent_at = message.sent_at or update.timestamp or datetime.now(UTC)
    if message.provider_message_id is None:
        message.provider_message_id = update.provider_message_id
    if message.state in STATUS_STATES and update.status.value in _STATUS_NAMED:
        current = message.state if message.state in _STATUS_NAMED else None
        if update.status.supersedes(current):
            message.state = S(update.status.value)
    if update.status.is_failure and message.state in (S.FAILED, S.UNDELIVERED):
        message.error_code = (update.error_code or "")[:32] or None
        message.error_text = (update.error_text or "")[:500] or None
        fall_back_later(message, why=f"{message.channel} {update.status.value}")
    if update.opted_out and message.customer_id:
        opt_out(message.customer_id, [message.channel], source="provider", detail=update.error_code)
    db.session.commit()
    return message


def fallback_key(message: OutboxMessage) -> str:
    return f"{message.idempotency_key}:fallback:{(message.fallbacks or ['-'])[0]}"[:191]


def fall_back_later(message: OutboxMessage, *, why: str, at: datetime | None = None) -> bool:
    """An asynchronous failure (a failed/undelivered status, or WhatsApp not delivered in time): the step moves
    on to its next channel, as a new outbox row for that channel, once (its idempotency key says so)."""
    if not message.fallbacks or message.case_id is None:
        return False
    key = fallback_key(message)
    if db.session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)) is not None:
        return False
    log.info("message %s falls back to %s: %s", message.id, message.fallbacks[0], why)
    db.session.add(
        OutboxMessage(
            case_id=message.case_id,
            customer_id=message.customer_id,
            step_n=message.step_n,
            channel=message.fallbacks[0],
            fallbacks=list(message.fallbacks[1:]),
            template=message.template,
            variant=message.variant,
            locale=message.locale,
            priority=message.priority,
            state=S.SCHEDULED,
            scheduled_for=at or datetime.now(UTC),
            deferred_by=[],
            contact_override=message.contact_override,  # the step's override holds on its next channel too
            policy_version_id=message.policy_version_id,
            rule_line=message.rule_line,
            idempotency_key=key,
        )
    )
    return True


def handle_inbound(message: InboundMessage) -> dict[str, Any]:
    """STOP ends SMS and WhatsApp for everyone with that number at once; START brings them back."""
    customers = customers_with_phone(message.sender)
    if message.keyword is Keyword.STOP:
        for customer in customers:
            opt_out(customer.id, PHONE_CHANNELS, source=f"{message.channel.value}_stop", detail=message.body[:255])
            skip_scheduled(customer.id, PHONE_CHANNELS, "customer replied STOP")
    elif message.keyword is Keyword.START:
        for customer in customers:
            opt_in(customer.id, PHONE_CHANNELS, source=f"{message.channel.value}_start", detail=message.body[:255])
    db.session.commit()
    return {"customers": len(customers), "keyword": message.keyword.value if message.keyword else None}


def unsubscribe_email(message_id: int) -> bool:
    message = db.session.get(OutboxMessage, message_id)
    if message is None or message.customer_id is None:
        return False
    opt_out(message.customer_id, [Channel.EMAIL], source="one_click", detail=f"message {message_id}")
    skip_scheduled(message.customer_id, [Channel.EMAIL], "customer unsubscribed")
    db.session.add(MessageEvent(message_id=message.id, kind="unsubscribed", provider_payload=None))
    db.session.commit()
    return True
