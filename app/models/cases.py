"""Recovery cases: one per failed payment, with every state transition recorded, and escalation tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.customers import Customer
from app.models.transactions import Transaction
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow
from rules.case_states import CaseState


class RecoveryCase(db.Model):
    __tablename__ = "recovery_cases"
    __table_args__ = (
        sa.Index("ix_recovery_cases_state", "state", "opened_at"),
        sa.Index("ix_recovery_cases_customer", "customer_id", "state"),
        sa.Index("ix_recovery_cases_updated", "updated_at"),  # what changed: the analytics refresh
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    # One case per failed payment: the database refuses a second one.
    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("transactions.id"), unique=True)
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    state: Mapped[str] = mapped_column(sa.String(16), default=CaseState.OPEN.value)
    amount_due_minor: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    policy_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policy_versions.id"))
    segment: Mapped[str | None] = mapped_column(sa.String(64))
    priority: Mapped[str | None] = mapped_column(sa.String(16))
    holdout: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the plan as DESIGN.md shows it
    escalated_to: Mapped[str | None] = mapped_column(sa.String(64))
    give_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovered_amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    # How the money came back: None = through Recoup (its payment page or a retry; recovered_message_id says which
    # message), "elsewhere" = an operator marked it paid outside Recoup (organic, credited to no message).
    recovered_via: Mapped[str | None] = mapped_column(sa.String(16))
    # An operator paused contact: nothing scheduled is sent and the give-up clock stops until it is resumed. The
    # case keeps its state (it can still be paid, and it still covers its order).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[str | None] = mapped_column(sa.String(254))
    recovered_message_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("outbox_messages.id", use_alter=True, name="fk_recovery_cases_recovered_message")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    transaction: Mapped[Transaction] = relationship(foreign_keys=[transaction_id])  # not joined_case_id
    customer: Mapped[Customer | None] = relationship()
    transitions: Mapped[list[CaseTransition]] = relationship(
        back_populates="case", order_by="CaseTransition.id", cascade="all, delete-orphan"
    )

    def __str__(self) -> str:
        return f"Case #{self.id}"


class CaseTransition(db.Model):
    """Append-only: every move of a case from one state to another, who or what moved it, and why."""

    __tablename__ = "case_transitions"
    __table_args__ = (sa.Index("ix_case_transitions_case", "case_id", "at"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("recovery_cases.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.String(255))
    actor: Mapped[str] = mapped_column(sa.String(64), default="system")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[RecoveryCase] = relationship(back_populates="transitions")

    def __str__(self) -> str:
        return f"{self.from_state or '—'} → {self.to_state}"


class Team(db.Model):
    """A team that escalated cases go to (named in policies: ``escalate after 2d to "collections"``)."""

    __tablename__ = "teams"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(254))

    def __str__(self) -> str:
        return self.name


class EscalationTask(db.Model):
    __tablename__ = "escalation_tasks"
    __table_args__ = (sa.UniqueConstraint("case_id", "team"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("recovery_cases.id", ondelete="CASCADE"))
    team: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), default="open")  # open|assigned|resolved
    assigned_to_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
