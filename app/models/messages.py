"""Multi-channel communication tracking: the outbox, and the append-only events of every message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow
from app.outbox.states import OutboxState, check_move
from rules.vocabulary import Priority


class OutboxMessage(db.Model):
    """One message we mean to send (or sent). Its states and the moves between them: app.outbox.states (each
    assignment of ``state`` is checked against that table); what each state means to the dispatcher: app.outbox."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        # Due-message claim: state + time, so the dispatcher's query is an index range.
        sa.Index("ix_outbox_due", "state", "scheduled_for"),
        # The claim itself: each priority's oldest due rows, as an index range (app.outbox.claim.claim_due).
        sa.Index("ix_outbox_claim", "state", "priority", "scheduled_for", "id"),
        sa.Index("ix_outbox_case", "case_id", "step_n"),
        sa.Index("ix_outbox_provider_id", "provider_message_id"),
        sa.Index("ix_outbox_updated", "updated_at"),  # what changed: the analytics refresh
        sa.Index("ix_outbox_customer_sent", "customer_id", "sent_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    case_id: Mapped[int | None] = mapped_column(sa.ForeignKey("recovery_cases.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    step_n: Mapped[int | None] = mapped_column()
    channel: Mapped[str] = mapped_column(sa.String(16))
    fallbacks: Mapped[list[str]] = mapped_column(JSONType, default=list)
    address: Mapped[str | None] = mapped_column(sa.String(254))
    template: Mapped[str | None] = mapped_column(sa.String(64))
    template_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("message_template_versions.id"))
    variant: Mapped[str | None] = mapped_column(sa.String(16))
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    priority: Mapped[str] = mapped_column(sa.String(8), default=Priority.DEFAULT.value)
    state: Mapped[str] = mapped_column(sa.String(16), default=OutboxState.SCHEDULED.value)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    deferred_by: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # What this message's contact rules may lift and who said so (rules.contact_rules.Override.as_dict): the
    # planner's decision, reproduced by the dispatcher at send time. None: the rules as written.
    contact_override: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(128))
    policy_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policy_versions.id"))
    rule_line: Mapped[int | None] = mapped_column()  # the policy source line that produced this message
    # Guards messages: the same step of the same case can be queued once, whatever retries or crashes.
    idempotency_key: Mapped[str] = mapped_column(sa.String(191), unique=True)
    error_code: Mapped[str | None] = mapped_column(sa.String(32))
    error_text: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    events: Mapped[list[MessageEvent]] = relationship(back_populates="message", order_by="MessageEvent.id")

    @validates("priority")
    def _known_priority(self, _key: str, value: str | None) -> str:
        """The dispatcher claims each priority by name (an index range each): anything else would never go."""
        return Priority.of(value).value

    @validates("state")
    def _allowed_move(self, _key: str, value: str) -> str:
        """Every move of a row's state follows the table (app.outbox.states.TRANSITIONS); anything else raises."""
        return check_move(self.id, self.state, value).value

    def __str__(self) -> str:
        return f"Message #{self.id} ({self.channel})"


class MessageEvent(db.Model):
    """Append-only: queued, sent, delivered, read, failed, opened, clicked, replied... with the provider's payload."""

    __tablename__ = "message_events"
    __table_args__ = (sa.Index("ix_message_events_message", "message_id", "occurred_at"),
                      sa.Index("ix_message_events_recorded", "recorded_at"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("outbox_messages.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # provider's time when known
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    provider_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    message: Mapped[OutboxMessage] = relationship(back_populates="events")
