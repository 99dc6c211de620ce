"""Message templates stored in the database: versions, validation at save, four-eyes approval, WhatsApp approval
status; and which template a customer gets (:func:`resolve_template`: the merchant's own *approved* text over the
built-in of the same name, channel and language, the built-ins staying known to policies and serving every other
language and channel).

With four-eyes on (the ``policy_four_eyes`` setting), saving makes a draft that customers never receive; its author
submits it, and it goes live only when someone else with the approver role approves it (a rejected version never
goes live). Until then the previously approved version, or the built-in, is what goes out. With four-eyes off a
saved version is approved, and live, at once. Every step is in the audit log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
import sqlalchemy as sa

from app.audit import record
from app.extensions import db
from app.messages.default_templates import DEFAULT_LANGUAGE, FALLBACK_NAME, builtin, language_of, whatsapp_language
from app.messages.default_templates import names as builtin_names
from app.messages.templating import MessageTemplate as Source
from app.messages.templating import template_errors, validate_template
from app.models import MessageTemplate, MessageTemplateVersion, User
from app.models.types import utcnow
from app.settings import four_eyes_required
from rules.vocabulary import Channel, TemplateStatus

#: who writes and submits template versions, and who approves or rejects them
TEMPLATE_WRITERS = ("author", "admin")
TEMPLATE_APPROVERS = ("approver", "admin")


# -- which template a customer gets --------------------------------------------------------------------------------
def known_template_names() -> set[str]:
    """Every template name a policy may use: the built-ins and every name saved in the admin."""
    return builtin_names() | set(db.session.scalars(sa.select(MessageTemplate.name).distinct()))


def resolve_template(name: str | None, channel: str, locale: str | None) -> Source:
    """The template a customer in ``locale`` receives for ``name`` on ``channel``.

    In order: the merchant's template in this exact locale, then in the same language; the built-in in that
    language; the merchant's template in English, then the built-in in English. A name nobody knows gets
    ``payment_failed`` the same way. The result's ``locale`` is the language it is written in."""
    for candidate in dict.fromkeys((name or FALLBACK_NAME, FALLBACK_NAME)):
        found = _resolve_exactly(candidate, channel, locale)
        if found is not None:
            return found
    raise LookupError(f"no template {name!r} for {channel}")


def _resolve_exactly(name: str, channel: str, locale: str | None) -> Source | None:
    saved = _saved_sources(name, channel)
    wanted = (locale or "").replace("-", "_").lower()
    for row_locale, source in saved:
        if row_locale.replace("-", "_").lower() == wanted:
            return source
    for language in dict.fromkeys((language_of(locale), DEFAULT_LANGUAGE)):
        for row_locale, source in saved:
            if language_of(row_locale) == language:
                return source
        found = builtin(name, channel, language)
        if found is not None:
            return found
    return None


def _saved_sources(name: str, channel: str) -> list[tuple[str, Source]]:
    rows = db.session.scalars(sa.select(MessageTemplate).where(
        MessageTemplate.name == name, MessageTemplate.channel == channel).order_by(MessageTemplate.id)).all()
    out = []
    for row in rows:
        version = row.current_version
        if version is not None and version.status == TemplateStatus.APPROVED:  # never a draft, pending or rejected
            out.append((row.locale, Source(body=version.body, subject=version.subject, html=version.html,
                                           locale=row.locale)))
    return out


def whatsapp_call(source: Source, context, locale: str | None, *, variables=None):  # type: ignore[no-untyped-def]
    """The language and parameters a WhatsApp template message is sent with: each ``{{ ... }}`` of the body,
    rendered for this customer, in the order Meta numbers them (as :func:`whatsapp_body` submitted it).
    ``variables``: the template variables already built for ``context`` and ``locale``, if the caller has them."""
    from app.channels.base import TemplateParam
    from app.messages.templating import render_expressions

    values = render_expressions(whatsapp_parameters(source.body), context, locale, variables=variables)
    params = tuple(TemplateParam(text=value.strip() or "-") for value in values)
    return whatsapp_language(source.locale or locale), params


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
    four_eyes: bool | None = None,
) -> MessageTemplateVersion:
    """A new version of a template; refused (nothing stored) when it would fail for a customer.

    With four-eyes on (``four_eyes``, else the setting) the version is a draft: customers keep receiving the live
    version (or the built-in) until it is submitted and someone else approves it. With it off it is live at once."""
    if four_eyes is None:
        four_eyes = four_eyes_required()
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
        status=TemplateStatus.DRAFT if four_eyes else TemplateStatus.APPROVED,
    )
    if not four_eyes:
        version.submitted_at = version.approved_at = utcnow()
        version.approved_by_id = actor.id if actor else None
    db.session.add(version)
    db.session.flush()
    if not four_eyes:
        template.current_version_id = version.id
    record(
        actor.email if actor else "system",
        "template.saved",
        "message_template",
        template.id,
        {"name": name, "channel": channel, "locale": locale, "version": number, "status": version.status,
         "four_eyes": four_eyes},
    )
    db.session.commit()
    return version


# -- four-eyes approval of a version -------------------------------------------------------------------------------
class TemplateReviewError(ValueError):
    """A review step refused. ``reason`` names which (the admin says it in the reader's language: own_version,
    not_draft, not_pending, older_than_live, no_reason, not_allowed, no_version); the message says it in English."""

    def __init__(self, reason: str, message: str, *, number: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.number = number


def latest_version(template: MessageTemplate | None) -> MessageTemplateVersion | None:
    """The newest version saved, whatever its status (what the editor continues from)."""
    return template.versions[-1] if template is not None and template.versions else None


def submit_template_version(version_id: int, *, actor: User | None) -> MessageTemplateVersion:
    """A draft goes to the approvers; it stays unsent until one of them (not its author) approves it."""
    version = _review_version(version_id)
    _check_role(actor, TEMPLATE_WRITERS, "submit")
    if version.status != TemplateStatus.DRAFT:
        raise TemplateReviewError("not_draft", f"version {version.number} is {version.status}, not a draft",
                                  number=version.number)
    version.status = TemplateStatus.PENDING_APPROVAL
    version.submitted_at = utcnow()
    _record(actor, "template.version_submitted", version, {})
    db.session.commit()
    return version


def approve_template_version(version_id: int, *, actor: User | None,
                             four_eyes: bool | None = None) -> MessageTemplateVersion:
    """A submitted version becomes the live one: customers receive it from the next dispatch run on.

    With four-eyes on only a person with the approver role who did not write it may approve it."""
    version = _review_version(version_id)
    if four_eyes is None:
        four_eyes = four_eyes_required()
    _check_role(actor, TEMPLATE_APPROVERS, "approve")
    if version.status != TemplateStatus.PENDING_APPROVAL:
        raise TemplateReviewError("not_pending", f"version {version.number} is {version.status}, not waiting for "
                                  "approval", number=version.number)
    if four_eyes and (actor is None or version.created_by_id == actor.id):
        raise TemplateReviewError("own_version", "a template version must be approved by someone other than its "
                                  "author", number=version.number)
    template = version.template
    live = template.current_version
    if live is not None and live.number > version.number:
        raise TemplateReviewError("older_than_live", f"version {version.number} is older than the live version "
                                  f"{live.number}: save its text again to bring it back", number=version.number)
    version.status = TemplateStatus.APPROVED
    version.approved_by_id = actor.id if actor else None
    version.approved_at = utcnow()
    template.current_version_id = version.id
    _record(actor, "template.version_approved", version,
            {"previous": live.number if live is not None else None, "four_eyes": four_eyes})
    db.session.commit()
    return version


def reject_template_version(version_id: int, *, actor: User | None, reason: str) -> MessageTemplateVersion:
    """A draft or submitted version is turned down: it never goes live; the text stays in the history with who
    rejected it, when and why."""
    version = _review_version(version_id)
    _check_role(actor, TEMPLATE_APPROVERS, "reject")
    if version.status not in (TemplateStatus.DRAFT, TemplateStatus.PENDING_APPROVAL):
        raise TemplateReviewError("not_pending", f"version {version.number} is {version.status}; only a version "
                                  "not yet approved can be rejected", number=version.number)
    if not reason.strip():
        raise TemplateReviewError("no_reason", "say why you reject this version", number=version.number)
    previous = version.status
    version.status = TemplateStatus.REJECTED
    version.rejected_by_id = actor.id if actor else None
    version.rejected_at = utcnow()
    version.rejection_reason = reason.strip()[:500]
    _record(actor, "template.version_rejected", version, {"was": previous, "reason": version.rejection_reason})
    db.session.commit()
    return version


def _review_version(version_id: int) -> MessageTemplateVersion:
    version = db.session.get(MessageTemplateVersion, version_id)
    if version is None:
        raise TemplateReviewError("no_version", f"there is no template version {version_id}")
    return version


def _check_role(actor: User | None, roles: tuple[str, ...], what: str) -> None:
    """A person acts only within their role (the system, ``None``, is set-up and tests)."""
    if actor is not None and not actor.has_role(*roles):
        raise TemplateReviewError("not_allowed", f"{actor.email} may not {what} template versions")


def _record(actor: User | None, action: str, version: MessageTemplateVersion, details: dict) -> None:  # type: ignore[type-arg]
    template = version.template
    record(_who(actor), action, "message_template_version", version.id,
           {"name": template.name, "channel": template.channel, "locale": template.locale, "version": version.number,
            "author_id": version.created_by_id, **details})


def apply_whatsapp_template_update(update) -> None:  # type: ignore[no-untyped-def]
    rows = db.session.scalars(
        sa.select(MessageTemplate).where(
            MessageTemplate.channel == Channel.WHATSAPP,
            sa.or_(MessageTemplate.whatsapp_name == update.name, MessageTemplate.name == update.name),
        )
    ).all()
    # Meta names a template by name AND language: an update for one language leaves the others as they are (a
    # payload without a language, which Meta does not send, still goes by the name alone)
    language = getattr(update, "language", None)
    for row in rows:
        if language and language not in (whatsapp_language(row.locale), row.locale):
            continue
        row.whatsapp_status = (update.event or "")[:16] or None
    db.session.commit()


# -- WhatsApp approval --------------------------------------------------------------------------------------------
#
# Meta approves a template's text with positional placeholders ({{1}}, {{2}}, ...) and an example value for each.
# Our templates are Jinja: each distinct ``{{ expression }}`` becomes the next position, in order of first
# appearance; the example is that expression rendered on the sample facts. ``whatsapp_parameters`` gives the
# expressions in that order, which is the order a sender must fill the parameters in.

_EXPRESSION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


class WhatsAppTemplateError(ValueError):
    """Cannot submit or refresh: the message says why in words (never a credential)."""


@dataclass(frozen=True)
class WhatsAppBody:
    text: str  # with {{1}}, {{2}}, ...
    expressions: tuple[str, ...]  # what each position holds, position 1 first
    examples: tuple[str, ...]


def whatsapp_parameters(body: str) -> tuple[str, ...]:
    """The Jinja expressions of a body in positional order ({{1}} first)."""
    return tuple(dict.fromkeys(" ".join(m.group(1).split()) for m in _EXPRESSION.finditer(body)))


def whatsapp_body(body: str, product_type: str = "subscription") -> WhatsAppBody:
    """A template body as the Cloud API wants it: positional placeholders and one example value per position."""
    from app.messages.templating import MessageTemplate as Source
    from app.messages.templating import render, sample_context

    if "{%" in body or "{#" in body:
        raise WhatsAppTemplateError("WhatsApp templates cannot hold conditions, loops or comments ({% ... %}); "
                                    "keep only {{ ... }} values")
    expressions = whatsapp_parameters(body)
    positions = {expr: n for n, expr in enumerate(expressions, start=1)}
    text = _EXPRESSION.sub(lambda m: f"{{{{{positions[' '.join(m.group(1).split())]}}}}}", body).strip()
    context = sample_context(product_type)
    examples = []
    for expr in expressions:
        try:
            value = render(Channel.WHATSAPP, Source(body="{{ " + expr + " }}"), context).text
        except Exception:  # a value the sample facts cannot fill still needs an example for Meta's reviewers
            value = ""
        examples.append(value or expr.split(".")[-1].split("|")[0].strip() or "example")
    return WhatsAppBody(text=text, expressions=expressions, examples=tuple(examples))


def _whatsapp_sender():  # type: ignore[no-untyped-def]
    from flask import current_app

    from app.outbox.senders import senders_for

    sender = senders_for(current_app._get_current_object()).get(Channel.WHATSAPP)  # type: ignore[attr-defined]
    if sender is None:
        raise WhatsAppTemplateError("WhatsApp is not configured: add a WhatsApp channel account in the settings")
    if not getattr(sender, "waba_id", None):
        raise WhatsAppTemplateError("the WhatsApp account needs its business account id (WABA id) to manage "
                                    "templates")
    return sender


def _whatsapp_template(template_id: int) -> MessageTemplate:
    template = db.session.get(MessageTemplate, template_id)
    if template is None or template.channel != Channel.WHATSAPP:
        raise WhatsAppTemplateError("there is no such WhatsApp template")
    return template


def submit_whatsapp_template(template_id: int, *, actor: User | None, category: str = "UTILITY") -> MessageTemplate:
    """Send the template's current version to Meta for approval; its status becomes what Meta answers (PENDING)."""
    from app.channels.whatsapp import TemplateApiError

    template = _whatsapp_template(template_id)
    version = template.current_version
    if version is None:
        raise WhatsAppTemplateError("save the template before submitting it")
    converted = whatsapp_body(version.body)
    component: dict = {"type": "BODY", "text": converted.text}  # type: ignore[type-arg]
    if converted.examples:
        component["example"] = {"body_text": [list(converted.examples)]}
    name, language = template.whatsapp_name or template.name, whatsapp_language(template.locale)
    try:
        answer = _whatsapp_sender().submit_template(name, language, [component], category=category)
    except TemplateApiError as exc:
        raise WhatsAppTemplateError(f"WhatsApp refused the template: {_graph_message(exc)}") from None
    except requests.RequestException as exc:
        raise WhatsAppTemplateError(f"WhatsApp could not be reached ({type(exc).__name__})") from None
    template.whatsapp_name = name
    template.whatsapp_status = str(answer.get("status") or "PENDING")[:16]
    record(_who(actor), "template.whatsapp_submitted", "message_template", template.id,
           {"name": name, "language": language, "version": version.number, "category": category,
            "whatsapp_id": answer.get("id"), "status": template.whatsapp_status,
            "parameters": list(converted.expressions)})
    db.session.commit()
    return template


def refresh_whatsapp_status(template_id: int, *, actor: User | None) -> MessageTemplate:
    """Ask Meta for the template's review status now (the webhook normally brings it)."""
    from app.channels.whatsapp import TemplateApiError

    template = _whatsapp_template(template_id)
    name, language = template.whatsapp_name or template.name, whatsapp_language(template.locale)
    try:
        found = _whatsapp_sender().list_templates(name)
    except TemplateApiError as exc:
        raise WhatsAppTemplateError(f"WhatsApp answered: {_graph_message(exc)}") from None
    except requests.RequestException as exc:
        raise WhatsAppTemplateError(f"WhatsApp could not be reached ({type(exc).__name__})") from None
    match = next((t for t in found if t.get("name") == name and t.get("language") == language), None)
    if match is None:
        raise WhatsAppTemplateError(f"WhatsApp has no template {name!r} in {language}: submit it first")
    status = str(match.get("status") or "")[:16] or None
    if status != template.whatsapp_status:
        record(_who(actor), "template.whatsapp_status", "message_template", template.id,
               {"name": name, "language": language, "from": template.whatsapp_status, "to": status,
                "reason": match.get("rejected_reason")})
        template.whatsapp_status = status
    template.whatsapp_name = name
    db.session.commit()
    return template


def _graph_message(exc: Exception) -> str:
    """Meta's words for a refusal: the user-facing message or the details, else the error's own message."""
    body = getattr(exc, "body", None) or {}
    details = body.get("error_user_msg") or (body.get("error_data") or {}).get("details")
    message = str(getattr(exc, "message", "") or exc)
    return f"{message}: {details}" if details else message


def _who(actor: User | None) -> str:
    return actor.email if actor is not None else "system"
