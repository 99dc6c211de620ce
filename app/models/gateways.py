"""Gateway accounts (credentials stored encrypted), fetch cursors, and inbound webhook events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class GatewayAccount(db.Model):
    __tablename__ = "gateway_accounts"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    gateway: Mapped[str] = mapped_column(sa.String(32))  # nmi|stripe|authorizenet
    api_url: Mapped[str | None] = mapped_column(sa.String(255))
    # Fernet token of a JSON object of secrets (security key, webhook signing key...). See app.accounts.secrets.
    credentials_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<GatewayAccount {self.name} ({self.gateway})>"

    def __str__(self) -> str:
        return f"{self.name} ({self.gateway})"


class FetchCursor(db.Model):
    """How far the scheduled fetch of one account has safely got. Moves only after a page is committed."""

    __tablename__ = "fetch_cursors"
    __table_args__ = (sa.UniqueConstraint("gateway_account_id", "kind"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_account_id: Mapped[int] = mapped_column(sa.ForeignKey("gateway_accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32), default="failed_sales")
    position: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last-modified time fetched up to
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(sa.String(16))  # ok|error
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    rows_last_run: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class InboundEvent(db.Model):
    """A provider webhook we accepted (signature verified). The same provider event id twice is one row. One not
    yet applied (``processed_at`` empty) waits in the inbox for a worker (:mod:`app.inbox`)."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        sa.UniqueConstraint("provider", "event_id"),
        sa.Index("ix_inbound_events_pending", "processed_at", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    event_id: Mapped[str] = mapped_column(sa.String(128))
    event_type: Mapped[str | None] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.Text)
    #: the gateway account whose key verified it (NMI): the one that reads it when it is applied
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("gateway_accounts.id", ondelete="SET NULL"))
    #: tries to apply it that failed; after :data:`app.inbox.MAX_ATTEMPTS` it is set aside, with its error
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
