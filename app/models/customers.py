"""Customers, as the gateways know them, with what we work out about them (timezone, segments) and their consent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow


class Customer(db.Model):
    __tablename__ = "customers"
    __table_args__ = (
        sa.UniqueConstraint("gateway_account_id", "gateway_customer_id"),
        sa.Index("ix_customers_email", "email"),
        sa.Index("ix_customers_phone_e164", "phone_e164"),
        sa.Index("ix_customers_updated", "updated_at"),  # what changed: the analytics refresh
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("gateway_accounts.id"))
    gateway_customer_id: Mapped[str | None] = mapped_column(sa.String(64))  # NMI customerid, optional
    vault_id: Mapped[str | None] = mapped_column(sa.String(64))  # NMI customer_vault_id: a token, never a card
    first_name: Mapped[str | None] = mapped_column(sa.String(100))
    last_name: Mapped[str | None] = mapped_column(sa.String(100))
    company: Mapped[str | None] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone_e164: Mapped[str | None] = mapped_column(sa.String(20))
    phone_raw: Mapped[str | None] = mapped_column(sa.String(40))
    # ISO 3166-1 alpha-2; the previous value is kept on change (a guessed locale follows it: app.ingest.customer_locale)
    country: Mapped[str | None] = mapped_column(sa.String(2), active_history=True)
    region: Mapped[str | None] = mapped_column(sa.String(64))  # state / province code
    city: Mapped[str | None] = mapped_column(sa.String(100))
    postal_code: Mapped[str | None] = mapped_column(sa.String(20))
    # Timezone: the zone used for display, every candidate zone a message must respect, and where it came from.
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    timezone_candidates: Mapped[list[str]] = mapped_column(JSONType, default=list)
    timezone_source: Mapped[str | None] = mapped_column(sa.String(16))  # explicit|address|postal|phone|country
    timezone_confidence: Mapped[Decimal | None] = mapped_column(sa.Numeric(4, 3))
    timezone_explicit: Mapped[str | None] = mapped_column(sa.String(64))  # set by an operator; always wins
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    locale_source: Mapped[str | None] = mapped_column(sa.String(16))  # guessed|manual (app.ingest.customer_locale)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    vip: Mapped[bool] = mapped_column(default=False)
    successful_payments: Mapped[int] = mapped_column(default=0)
    failed_payments: Mapped[int] = mapped_column(default=0)
    lifetime_value_minor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    lifetime_value_currency: Mapped[str | None] = mapped_column(sa.String(3))
    card_masked: Mapped[str | None] = mapped_column(sa.String(24))  # e.g. 4xxxxxxxxxxx1111; never the number
    card_expiry: Mapped[str | None] = mapped_column(sa.String(7))  # MMYY as the gateway gives it
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    opt_outs: Mapped[list[OptOut]] = relationship(back_populates="customer", cascade="all, delete-orphan")

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or (self.email or f"customer {self.id}")

    def __repr__(self) -> str:
        return f"<Customer {self.id} {self.email!r}>"

    def __str__(self) -> str:  # lists and pickers: "Ana Pérez <ana@example.com>"
        named = " ".join(p for p in (self.first_name, self.last_name) if p)
        if named and self.email:
            return f"{named} <{self.email}>"
        return named or self.email or self.phone_e164 or f"customer {self.id}"


class OptOut(db.Model):
    """The customer does not want this channel. Present = opted out; removed when they opt back in."""

    __tablename__ = "opt_outs"
    __table_args__ = (sa.UniqueConstraint("customer_id", "channel"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(sa.String(16))  # email|sms|whatsapp
    source: Mapped[str] = mapped_column(sa.String(32))  # sms_stop|one_click|operator|whatsapp_block|provider
    detail: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="opt_outs")

    def __str__(self) -> str:
        return self.channel


class ConsentEvent(db.Model):
    """Append-only history of opt-outs and opt-ins, so consent can be shown at any past moment."""

    __tablename__ = "consent_events"
    __table_args__ = (sa.Index("ix_consent_events_customer", "customer_id", "at"),
                      sa.Index("ix_consent_events_at", "at"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(sa.String(16))
    action: Mapped[str] = mapped_column(sa.String(16))  # opt_out|opt_in
    source: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[str | None] = mapped_column(sa.String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
