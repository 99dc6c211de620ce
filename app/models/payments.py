"""Payment links (only a hash of the token is kept) and payment attempts. No card number or CVV is ever stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class PaymentLink(db.Model):
    __tablename__ = "payment_links"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("recovery_cases.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 hex of the signed token
    # The short link for SMS/WhatsApp (/p/<code>, app.payments.links): sha256 hex of its code, and the message the
    # token names
    short_code_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox_messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_count: Mapped[int] = mapped_column(default=0)
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Payment(db.Model):
    """One attempt to collect a case's money. ``order_id`` is unique per attempt: the gateway dedupes on it, and
    ingest knows Recoup's own charges by it (and by ``gateway_transaction_id``) when the gateway reports them."""

    __tablename__ = "payments"
    __table_args__ = (
        sa.Index("ix_payments_case", "case_id", "created_at"),
        # "is this fetched or pushed transaction one of our own charges?" for every ingested chunk
        sa.Index("ix_payments_gateway_transaction", "gateway_transaction_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("recovery_cases.id", ondelete="CASCADE"))
    link_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payment_links.id"))
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outbox_messages.id"))  # attribution
    order_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    method: Mapped[str] = mapped_column(sa.String(16))  # vault|new_card|ach|partial|retry
    initiator: Mapped[str] = mapped_column(sa.String(8))  # customer|merchant
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")  # pending|approved|declined|error|unknown
    gateway_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    card_masked: Mapped[str | None] = mapped_column(sa.String(24))  # a new card or account: what the page showed
    response_code: Mapped[str | None] = mapped_column(sa.String(16))
    response_text: Mapped[str | None] = mapped_column(sa.String(255))
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
