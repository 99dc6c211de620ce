"""A person settles a row nobody could: it was delivered, or it is sent again."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import OutboxMessage
from app.models.types import utcnow
from app.outbox.batch import add_event_for
from app.outbox.states import OutboxState as S
from app.outbox.states import sources


def resolve_review(message_id: int, *, delivered: bool, actor: str = "operator") -> bool:
    """A person settles a ``review`` row: it was delivered (``sent``), or it was not (sent again)."""
    state = S.SENT if delivered else S.SCHEDULED
    values: dict[str, Any] = {"state": state, "claimed_by": None}
    if delivered:
        values["sent_at"] = utcnow()
    changed = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.state.in_(sources(state, among={S.REVIEW})))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        add_event_for(message_id, "reviewed", {"delivered": delivered, "by": actor})
    db.session.commit()
    return bool(changed)
