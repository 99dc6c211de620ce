"""Experiments: what a policy version tests (its ``experiment`` block), who was assigned to which arm, and when the
first message of that arm actually went (exposure).

An experiment row is made the first time a version carrying the block is activated or plans a case; a later
version with the same definition (the name, arm names and weights: ``salt``) continues it, so editing an arm's
steps keeps the assignments while changing the split starts over. Assignments are kept per case, sticky per
customer (``rules.planner`` draws the arm from the customer); ``exposed_at`` is stamped from the outbox's first
send of the case, so a quiet-hour deferral cannot bias who counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, JSONType, UTCDateTime, utcnow

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Experiment(db.Model):
    __tablename__ = "experiments"
    __table_args__ = (sa.UniqueConstraint("policy_id", "salt", name="uq_experiments_policy_salt"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("policies.id"))
    name: Mapped[str] = mapped_column(sa.String(120))
    salt: Mapped[str] = mapped_column(sa.String(255))
    control: Mapped[str] = mapped_column(sa.String(64))
    arms: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)  # [{"name", "weight" (a decimal string, %)}]
    guardrails: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)  # [{"metric", "max_harm" (fraction)}]
    status: Mapped[str] = mapped_column(sa.String(16), default="running")  # ExperimentStatus
    planned_units: Mapped[int] = mapped_column()  # cases the power calculator asked for, every arm together
    baseline_rate: Mapped[str | None] = mapped_column(sa.String(16))  # the history's recovery rate it assumed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policy_versions.id"))
    stopped_arms: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)  # [{"arm","at","by","why"}]
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(sa.String(254))
    end_reason: Mapped[str | None] = mapped_column(sa.String(500))
    promoted_arm: Mapped[str | None] = mapped_column(sa.String(64))
    promoted_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policy_versions.id"))

    def __str__(self) -> str:
        return self.name

    @property
    def stopped_arm_names(self) -> list[str]:
        return [entry["arm"] for entry in self.stopped_arms or ()]


class ArmAssignment(db.Model):
    __tablename__ = "experiment_assignments"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "case_id", name="uq_experiment_assignments_case"),
        sa.Index("ix_experiment_assignments_arm", "experiment_id", "arm"),
        sa.Index("ix_experiment_assignments_exposure", "exposed_at", "experiment_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id"))
    case_id: Mapped[int] = mapped_column(ID, sa.ForeignKey("recovery_cases.id"))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    unit: Mapped[str] = mapped_column(sa.String(80))  # what the arm was drawn from: customer:<id> or transaction:<id>
    arm: Mapped[str] = mapped_column(sa.String(64))
    policy_version_id: Mapped[int] = mapped_column(sa.ForeignKey("policy_versions.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    exposed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
