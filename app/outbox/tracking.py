"""Recording what happens to messages: every event is a row, nothing is overwritten."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from app.extensions import db
from app.models import MessageEvent, OutboxMessage
from app.models.types import utcnow

log = logging.getLogger(__name__)


def record_message_event(
    message_id: int, kind: str, payload: dict[str, Any] | None = None, occurred_at: datetime | None = None
) -> MessageEvent | None:
    if db.session.get(OutboxMessage, message_id) is None:
        log.warning("event %s for unknown message %s ignored", kind, message_id)
        return None
    event = MessageEvent(
        message_id=message_id, kind=kind, provider_payload=payload, occurred_at=occurred_at or utcnow()
    )
    db.session.add(event)
    db.session.commit()
    return event
