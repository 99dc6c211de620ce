"""WhatsApp users by their business-scoped user id (BSUID): which phone number each one is.

Meta gives every WhatsApp user a user id per business portfolio (``US.1349...``) and, for a user who adopted a
username, may leave the phone number out of a webhook: then the user id alone says who wrote. A user id belongs to
one number for good (a user who changes number gets a new one), so Recoup keeps user id -> phone, learned from every
webhook that carries both (an inbound message, or a status of a message we sent to that number), and finds the
customers of a user-id-only message through that phone, as a STOP by phone does.

Each user id is one ``inbound_events`` row (provider ``whatsapp``, event id ``user_id:<user id>``): the webhook that
first tied it to a number, found by the table's unique key; no schema of its own. A STOP from a user id not tied to
any number yet is kept on that row (``opted_out``) and takes effect as soon as the number is learned.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import InboundEvent

log = logging.getLogger(__name__)

PROVIDER = "whatsapp"
EVENT_TYPE = "whatsapp_user_id"


def _key(user_id: str) -> str:
    return f"user_id:{user_id}"[:128]


def _row(user_id: str) -> InboundEvent | None:
    return db.session.scalars(
        sa.select(InboundEvent).where(InboundEvent.provider == PROVIDER, InboundEvent.event_id == _key(user_id))
    ).first()


def phone_of(user_id: str | None) -> str | None:
    """The E.164 number a user id belongs to, when a webhook has told us."""
    if not user_id:
        return None
    row = _row(user_id)
    return (row.payload or {}).get("phone") if row is not None else None


def _add(user_id: str, payload: dict[str, Any]) -> InboundEvent | None:
    """A new row for ``user_id``; None when another request added one first (the caller reads that one)."""
    row = InboundEvent(provider=PROVIDER, event_id=_key(user_id), event_type=EVENT_TYPE, payload=payload,
                       processed_at=datetime.now(UTC))
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return None
    return row


def remember(user_id: str | None, phone: str | None, *, seen_in: str) -> str | None:
    """Tie ``user_id`` to ``phone`` (E.164) when a webhook carried both. Returns the STOP kept for this user id
    (its text; sent while the number was withheld and unknown) when it is now due for the number's customers."""
    if not user_id or not phone:
        return None
    row = _row(user_id)
    if row is None:
        row = _add(user_id, {"phone": phone, "seen_in": seen_in})
        if row is not None:
            return None
        row = _row(user_id)
        if row is None:
            return None
    payload = dict(row.payload or {})
    if payload.get("phone") == phone:
        return None
    if payload.get("phone"):  # Meta gives a changed number a new user id: this should not happen
        log.warning("WhatsApp user id %s came with %s, tied to %s before; kept the first", user_id, phone,
                    payload["phone"])
        return None
    pending = payload.pop("opted_out", None) and str(payload.pop("detail", "") or "STOP")
    payload.update(phone=phone, seen_in=seen_in)
    row.payload = payload
    return pending or None


def keep_opt_out(user_id: str, detail: str | None) -> None:
    """A STOP (``detail``: its text) or a START (None) from a user id whose number is not known yet: kept, to take
    effect when the number is learned (the last word counts)."""
    row = _row(user_id) or _add(user_id, {"phone": None}) or _row(user_id)
    if row is None:
        return
    payload = {k: v for k, v in (row.payload or {}).items() if k not in ("opted_out", "detail")}
    if detail is not None:
        payload.update(opted_out=True, detail=detail[:255])
    row.payload = payload
    log.info("WhatsApp %s from user id %s, whose number is not known yet: kept until it is",
             "STOP" if detail is not None else "START", user_id)
