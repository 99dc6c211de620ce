"""Message templates stored in the database: versions, validation at save, WhatsApp approval status."""

from __future__ import annotations

import sqlalchemy as sa

from app.audit import record
from app.extensions import db
from app.models import MessageTemplate, MessageTemplateVersion, User
from app.templating import template_errors, validate_template


class TemplateRefused(ValueError):
    def __init__(self, problems: list) -> None:  # type: ignore[type-arg]
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def save_template(
    name: str,
    channel: str,
    locale: str,
    *,
    body: str,
    subject: str | None = None,
    html: str | None = None,
    actor: User | None = None,
) -> MessageTemplateVersion:
    """A new version of a template; refused (nothing stored) when it would fail for a customer."""
    problems = template_errors(validate_template(channel, subject, body, source_html=html))
    if problems:
        raise TemplateRefused(problems)
    template = db.session.scalar(
        sa.select(MessageTemplate).where(
            MessageTemplate.name == name, MessageTemplate.channel == channel, MessageTemplate.locale == locale
        )
    )
    if template is None:
        template = MessageTemplate(name=name, channel=channel, locale=locale)
        db.session.add(template)
        db.session.flush()
    number = (
        db.session.scalar(
            sa.select(sa.func.max(MessageTemplateVersion.number)).where(
                MessageTemplateVersion.template_id == template.id
            )
        )
        or 0
    ) + 1
    version = MessageTemplateVersion(
        template_id=template.id,
        number=number,
        subject=subject,
        body=body,
        html=html,
        created_by_id=actor.id if actor else None,
    )
    db.session.add(version)
    db.session.flush()
    template.current_version_id = version.id
    record(
        actor.email if actor else "system",
        "template.saved",
        "message_template",
        template.id,
        {"name": name, "channel": channel, "locale": locale, "version": number},
    )
    db.session.commit()
    return version


def apply_whatsapp_template_update(update) -> None:  # type: ignore[no-untyped-def]
    rows = db.session.scalars(
        sa.select(MessageTemplate).where(
            MessageTemplate.channel == "whatsapp",
            sa.or_(MessageTemplate.whatsapp_name == update.name, MessageTemplate.name == update.name),
        )
    ).all()
    for row in rows:
        row.whatsapp_status = (update.event or "")[:16] or None
    db.session.commit()
