"""Transactions fetched from (or pushed by) a gateway. Money is integer minor units plus an ISO currency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.customers import Customer
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class Transaction(db.Model):
    __tablename__ = "transactions"
    __table_args__ = (
        # Guards money: the same gateway transaction is one row, however often it is fetched or pushed.
        sa.UniqueConstraint("gateway", "gateway_account_id", "gateway_transaction_id"),
        sa.Index("ix_transactions_customer", "customer_id", "failed_at"),
        sa.Index("ix_transactions_failed_at", "failed_at"),
        # "does this order already have a case?" for every ingested chunk (app.ingest.order_cases.decide)
        sa.Index("ix_transactions_order", "order_id", "gateway_account_id"),
        sa.Index("ix_transactions_joined_case", "joined_case_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    gateway: Mapped[str] = mapped_column(sa.String(32))
    gateway_account_id: Mapped[int] = mapped_column(sa.ForeignKey("gateway_accounts.id"))
    gateway_transaction_id: Mapped[str] = mapped_column(sa.String(64))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="failed")  # failed|approved|refunded|voided
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    value_band: Mapped[str | None] = mapped_column(sa.String(16))
    decline_code: Mapped[str | None] = mapped_column(sa.String(16))
    decline_text: Mapped[str | None] = mapped_column(sa.String(255))
    merchant_advice_code: Mapped[str | None] = mapped_column(sa.String(4))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(32))  # rules.declines.DeclineReason
    decline_kind: Mapped[str | None] = mapped_column(sa.String(8))  # soft|hard|stop
    product_type: Mapped[str | None] = mapped_column(sa.String(32))
    order_id: Mapped[str | None] = mapped_column(sa.String(128))
    order_description: Mapped[str | None] = mapped_column(sa.String(255))
    card_masked: Mapped[str | None] = mapped_column(sa.String(24))
    # A later failure of an order that already had a case: the case it joined, or (closed) was attached to.
    # A case's own failure is ``RecoveryCase.transaction_id``; this is for the ones that came after it.
    joined_case_id: Mapped[int | None] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("recovery_cases.id", use_alter=True, name="fk_transactions_joined_case", ondelete="SET NULL"),
    )
    is_first_payment: Mapped[bool | None] = mapped_column()
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer | None] = relationship()

    def __repr__(self) -> str:
        return f"<Transaction {self.gateway}:{self.gateway_transaction_id} {self.amount_minor} {self.currency}>"

    def __str__(self) -> str:  # "nmi 9000001: 249.00 USD"
        from app.payments.money import minor_to_decimal

        amount = minor_to_decimal(self.amount_minor, self.currency)
        return f"{self.gateway} {self.gateway_transaction_id}: {amount} {self.currency}"
