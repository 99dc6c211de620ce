"""The append-only audit log, each entry chained to the one before by a hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_target", "target_type", "target_id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str | None] = mapped_column(sa.String(64))
    target_id: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: how ``hash`` was made: 1 = plain SHA-256 (entries written before the chain was keyed), 2 = HMAC-SHA256 with the
    #: audit key (app.audit). Rows older than the column read 1.
    hash_version: Mapped[int] = mapped_column(sa.SmallInteger, default=2, server_default=sa.text("1"))


class AuditChainHead(db.Model):
    """The chain's signed head, one row (id 1), moved with every entry in the same transaction and locked while it
    moves (``SELECT ... FOR UPDATE``), so concurrent writers queue instead of forking the chain. It names the last
    entry, its hash and how many entries there are, signed with the audit key: removing the newest entries (or the
    whole log) no longer goes unnoticed. See app.audit."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    last_hash: Mapped[str | None] = mapped_column(sa.String(64))
    entries: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), default=0)
    #: the last unkeyed entry when the head was first made (an upgraded log); later entries must be keyed
    legacy_until_id: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    #: set when the head was missing although keyed entries existed (someone removed it): verify reports it
    recreated_at_id: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    signature: Mapped[str | None] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@event.listens_for(AuditEntry, "before_update")
def _audit_is_append_only(mapper, connection, target: AuditEntry) -> None:  # type: ignore[no-untyped-def]
    raise ValueError("the audit log is append-only")


@event.listens_for(AuditEntry, "before_delete")
def _audit_is_never_deleted(mapper, connection, target: AuditEntry) -> None:  # type: ignore[no-untyped-def]
    raise ValueError("the audit log is append-only")


class Setting(db.Model):
    """Merchant settings edited in the admin (business hours, value bands, FX rates, product rules...)."""

    __tablename__ = "settings"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(sa.String(254))
