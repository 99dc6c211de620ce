"""Recovery policies: an editable draft, and immutable numbered versions that are approved and activated."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, LongText, UTCDateTime, utcnow
from rules.vocabulary import PolicyStatus, TemplateStatus


class Policy(db.Model):
    __tablename__ = "policies"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))
    draft_source: Mapped[str | None] = mapped_column(LongText)  # saving a draft never changes what runs
    draft_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    draft_updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    active_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("policy_versions.id", use_alter=True, name="fk_policies_active_version")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[PolicyVersion]] = relationship(
        back_populates="policy", foreign_keys="PolicyVersion.policy_id", order_by="PolicyVersion.number"
    )
    active_version: Mapped[PolicyVersion | None] = relationship(foreign_keys=[active_version_id], post_update=True)

    def __str__(self) -> str:
        return self.name


class PolicyVersion(db.Model):
    """Immutable once written: the source never changes; only its review and activation stamps are filled in."""

    __tablename__ = "policy_versions"
    __table_args__ = (sa.UniqueConstraint("policy_id", "number"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(sa.ForeignKey("policies.id"))
    number: Mapped[int] = mapped_column()
    source: Mapped[str] = mapped_column(LongText)
    source_sha256: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(20), default=PolicyStatus.PENDING_APPROVAL.value)  # PolicyStatus
    based_on_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("policy_versions.id"))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approval_reason: Mapped[str | None] = mapped_column(sa.String(500))
    activated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejection_reason: Mapped[str | None] = mapped_column(sa.String(500))

    policy: Mapped[Policy] = relationship(back_populates="versions", foreign_keys=[policy_id])

    def __str__(self) -> str:
        return f"{self.policy.name} v{self.number}" if self.policy else f"v{self.number}"


IMMUTABLE_VERSION_FIELDS = ("source", "source_sha256", "number", "policy_id", "author_id", "submitted_at")


@event.listens_for(PolicyVersion, "before_update")
def _refuse_changes_to_a_version(mapper, connection, target: PolicyVersion) -> None:  # type: ignore[no-untyped-def]
    state = sa.inspect(target)
    changed = [name for name in IMMUTABLE_VERSION_FIELDS if state.attrs[name].history.has_changes()]
    if changed:
        raise ValueError(f"policy version {target.id} is immutable; refused change to {', '.join(changed)}")


@event.listens_for(PolicyVersion, "before_delete")
def _refuse_deleting_a_version(mapper, connection, target: PolicyVersion) -> None:  # type: ignore[no-untyped-def]
    raise ValueError(f"policy version {target.id} is part of the policy's history and cannot be deleted")


class MessageTemplate(db.Model):
    __tablename__ = "message_templates"
    __table_args__ = (sa.UniqueConstraint("name", "channel", "locale"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(16), default="en")
    segment: Mapped[str | None] = mapped_column(sa.String(64))
    decline_reason: Mapped[str | None] = mapped_column(sa.String(32))
    #: the live version: the newest approved one, what customers receive (never a draft, pending or rejected one)
    current_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("message_template_versions.id", use_alter=True, name="fk_message_templates_current_version")
    )
    whatsapp_name: Mapped[str | None] = mapped_column(sa.String(512))
    whatsapp_status: Mapped[str | None] = mapped_column(sa.String(16))  # PENDING|APPROVED|REJECTED|PAUSED
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[MessageTemplateVersion]] = relationship(
        back_populates="template",
        foreign_keys="MessageTemplateVersion.template_id",
        order_by="MessageTemplateVersion.number",
    )
    current_version: Mapped[MessageTemplateVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.channel}, {self.locale})"


class MessageTemplateVersion(db.Model):
    """A saved text. With four-eyes on it is a draft, then submitted, and customers receive it only once someone
    other than its author approves it (app.messages.templates_service); with it off it is approved as it is saved."""

    __tablename__ = "message_template_versions"
    __table_args__ = (sa.UniqueConstraint("template_id", "number"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(sa.ForeignKey("message_templates.id"))
    number: Mapped[int] = mapped_column()
    subject: Mapped[str | None] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(LongText)
    html: Mapped[str | None] = mapped_column(LongText)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(sa.String(20), default=TemplateStatus.DRAFT.value,
                                        server_default=TemplateStatus.DRAFT.value)  # TemplateStatus
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejection_reason: Mapped[str | None] = mapped_column(sa.String(500))

    template: Mapped[MessageTemplate] = relationship(back_populates="versions", foreign_keys=[template_id])
