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
from app.outbox.whatsapp_users import keep_opt_out, phone_of, remember
from rules.vocabulary import PHONE_CHANNELS, Channel

log = logging.getLogger(__name__)

S = OutboxState
#: states a status update may move a message out of (the highest status seen wins; see DeliveryStatus.rank)
STATUS_STATES = frozenset({S.SENT, S.DELIVERED, S.READ, S.FAILED, S.UNDELIVERED, S.UNKNOWN, S.SENDING, S.DELIVERING,
                           S.REVIEW})
#: a status for a row in one of these proves the provider took the message
UNSETTLED = frozenset({S.UNKNOWN, S.SENDING, S.DELIVERING, S.REVIEW})
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


def _e164(number: str | None) -> str | None:
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    return "+" + digits if digits else None


def apply_status(update: StatusUpdate) -> OutboxMessage | None:
    if update.channel is Channel.WHATSAPP and update.recipient_user_id:
        _learn_user_id(update.recipient_user_id, _e164(update.recipient),
                       seen_in=f"status {update.provider_message_id}")
    message = find_message(update)
    if message is None:
        log.info(
            "status %s for unknown message %s/%s ignored", update.status, update.reference, update.provider_message_id
        )
        db.session.commit()  # what was learned about the user id
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


def _stop(customer_ids: list[int], source: str, detail: str) -> None:
    for customer_id in customer_ids:
        opt_out(customer_id, PHONE_CHANNELS, source=source, detail=detail[:255])
        skip_scheduled(customer_id, PHONE_CHANNELS, "customer replied STOP")


def _learn_user_id(user_id: str, phone: str | None, *, seen_in: str) -> None:
    """A webhook carried a WhatsApp user id with its number: remember it, and apply a STOP the user id sent while
    its number was still unknown."""
    pending = remember(user_id, phone, seen_in=seen_in)
    if pending is not None and phone:
        _stop([c.id for c in customers_with_phone(phone)], "whatsapp_stop", f"{pending} (user id {user_id})")


def handle_inbound(message: InboundMessage) -> dict[str, Any]:
    """STOP ends SMS and WhatsApp for everyone with that number at once; START brings them back.

    On WhatsApp the number may be withheld (a user with a username): the sender's user id then finds the number
    through an earlier webhook that carried both (:mod:`app.outbox.whatsapp_users`); a STOP from a user id not
    known yet is kept and takes effect once its number is learned."""
    user_id = message.sender_user_id if message.channel is Channel.WHATSAPP else None
    phone = message.sender or None
    if user_id and phone:
        _learn_user_id(user_id, phone, seen_in=f"message {message.provider_message_id}")
    elif user_id:
        phone = phone_of(user_id)
    customers = customers_with_phone(phone) if phone else []
    detail = message.body if not user_id or message.sender else f"{message.body[:200]} (user id {user_id})"
    if message.keyword is Keyword.STOP:
        _stop([c.id for c in customers], f"{message.channel.value}_stop", detail)
        if phone is None and user_id:
            keep_opt_out(user_id, message.body)
    elif message.keyword is Keyword.START:
        for customer in customers:
            opt_in(customer.id, PHONE_CHANNELS, source=f"{message.channel.value}_start", detail=detail[:255])
        if phone is None and user_id:
            keep_opt_out(user_id, None)
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
