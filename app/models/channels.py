"""Channel accounts: what the senders use (SMTP, Twilio, WhatsApp), entered in the admin, stored encrypted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class ChannelAccount(db.Model):
    """One provider account for a channel. ``settings`` holds what is not secret (API URL, sender address, phone
    number id); ``credentials_encrypted`` a Fernet token of the secrets (see app.accounts.secrets). The enabled
    account of a
    channel wins over the environment's."""

    __tablename__ = "channel_accounts"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16), index=True)  # email|sms|whatsapp
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    credentials_encrypted: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<ChannelAccount {self.name} ({self.channel})>"

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"
