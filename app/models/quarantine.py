"""Gateway records refused at ingest (app.ingest.validation), kept as they came with what is wrong with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class QuarantinedRecord(db.Model):
    """One gateway record that could not be accepted: it opened no case and sent nothing. The same record fetched
    or pushed again is this row seen again (``times_seen``, ``last_seen_at``), never a second row. An operator may
    dismiss it; if it comes back changed, it is shown again."""

    __tablename__ = "quarantined_records"
    __table_args__ = (
        sa.UniqueConstraint("gateway_account_id", "gateway", "record_key", name="uq_quarantined_records_record"),
        sa.Index("ix_quarantined_records_open", "dismissed_at", "last_seen_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    gateway_account_id: Mapped[int] = mapped_column(sa.ForeignKey("gateway_accounts.id", ondelete="CASCADE"))
    gateway: Mapped[str] = mapped_column(sa.String(32))
    #: the gateway transaction id, or ``sha256:<hex>`` of the record when it has no usable one
    record_key: Mapped[str] = mapped_column(sa.String(80))
    gateway_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))  # as received, for people to find it
    kind: Mapped[str] = mapped_column(sa.String(16))  # failed_sale | sale: what it would have been
    source: Mapped[str] = mapped_column(sa.String(16))  # fetch | webhook
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # the record as received
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)  # [{"field": ..., "problem": ...}]
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    times_seen: Mapped[int] = mapped_column(default=1)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_by: Mapped[str | None] = mapped_column(sa.String(254))  # the operator's email, as in the audit log

    def __repr__(self) -> str:
        return f"<QuarantinedRecord {self.gateway}:{self.record_key} {len(self.reasons or [])} reason(s)>"
