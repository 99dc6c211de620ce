"""Message templates per channel and locale: versions, live preview on sample facts, SMS segments, WhatsApp status."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from flask import current_app, flash, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin.security import EVERYONE, RoleGuard
from app.extensions import db
from app.messages.default_templates import DEFAULTS, language_of
from app.messages.merchant import merchant_profile
from app.messages.templates_service import (
    TemplateRefused,
    WhatsAppTemplateError,
    refresh_whatsapp_status,
    resolve_template,
    save_template,
    submit_whatsapp_template,
)
from app.messages.templating import PRODUCT_TYPES, normalise_locale, render, sample_context, validate_template
from app.messages.templating import MessageTemplate as Source
from app.models import MessageTemplate, User
from rules.vocabulary import Channel

WRITERS = ("author", "admin")
CHANNELS = tuple(c.value for c in Channel)
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LOCALE = re.compile(r"[A-Za-z]{2}([_-][A-Za-z]{2})?")
SAMPLE_SHORT_CODE = "Ab3dEf6hIj"  # as long as a real short link's code (app.payments.links.SHORT_LENGTH)


@dataclass(frozen=True)
class CatalogueRow:
    """One line of the templates list: a template the merchant saved, or a built-in nobody has customised."""

    name: str
    channel: str
    locale: str
    row: MessageTemplate | None = None  # None: the built-in is what customers get


def catalogue(channel: str | None) -> list[CatalogueRow]:
    """Every template customers can get: the saved ones, and each built-in not customised in its language."""
    query = sa.select(MessageTemplate)
    if channel:
        query = query.where(MessageTemplate.channel == channel)
    saved = list(db.session.scalars(query))
    covered = {(t.name, t.channel, language_of(t.locale)) for t in saved if t.current_version is not None}
    rows = [CatalogueRow(t.name, t.channel, t.locale, t) for t in saved]
    rows += [CatalogueRow(name, ch, language) for name, ch, language in DEFAULTS
             if (not channel or ch == channel) and (name, ch, language) not in covered]
    return sorted(rows, key=lambda r: (r.name, CHANNELS.index(r.channel), r.locale))


def starting_text(template: MessageTemplate | None, name: str, channel: str, locale: str) -> tuple[Any, ...]:
    """What the editor shows before anything is typed: the saved version, else the live text customers in this
    locale receive now. And where it is from: ``saved`` (this template), ``other`` (the merchant's text for another
    locale of the language, or English), ``builtin`` (this name's built-in) or ``fallback`` (a name without a
    built-in: what a policy naming it sends today)."""
    current = template.current_version if template else None
    if current is not None:
        return current.subject, current.body, current.html, "saved"
    live = resolve_template(name, channel, locale)
    key = next((k for k, v in DEFAULTS.items() if v is live), None)
    origin = "other" if key is None else ("builtin" if key[0] == name else "fallback")
    return live.subject if channel == Channel.EMAIL else None, live.body, live.html, origin


def preview(channel: str, subject: str | None, body: str, html: str | None, locale: str,
            product_type: str = "subscription") -> dict[str, Any]:
    problems = validate_template(channel, subject if channel == Channel.EMAIL else None, body,
                                 source_html=html if channel == Channel.EMAIL else None)
    out: dict[str, Any] = {
        "problems": [{"field": p.field, "line": p.line, "message": p.message, "severity": p.severity}
                     for p in problems],
    }
    if any(p.severity == "error" for p in problems):
        return out
    context = sample_context(product_type if product_type in PRODUCT_TYPES else "subscription")
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    link = f"{base}/p/{SAMPLE_SHORT_CODE}" if channel != Channel.EMAIL else context.payment_link
    context = replace(context, customer={**context.customer, "locale": normalise_locale(locale)},
                      merchant=merchant_profile().template_fields(), payment_link=link)
    rendered = render(channel, Source(body=body, subject=subject if channel == Channel.EMAIL else None,
                                      html=html or None if channel == Channel.EMAIL else None,
                                      locale=language_of(locale)), context, locale)
    out.update({"text": rendered.text, "subject": rendered.subject, "html": rendered.html})
    if rendered.sms is not None:
        encoding = rendered.sms.encoding
        out.update({"segments": rendered.sms.segments, "length": rendered.sms.length,
                    "encoding": str(getattr(encoding, "value", encoding))})
    return out


class TemplateView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = WRITERS  # and the preview: rendering is work, so only those who may write templates ask for it

    @expose("/")
    def index(self) -> Any:
        channel = request.args.get("channel") or ""
        rows = catalogue(channel if channel in CHANNELS else None)
        return self.render("admin/msgtemplates/index.html", rows=rows, channel=channel,
                           channels=CHANNELS, can_write=self.can_write)

    @expose("/edit", methods=["GET", "POST"])
    def edit(self) -> Any:
        name = (request.values.get("name") or "").strip()
        channel = request.values.get("channel") or Channel.EMAIL.value
        locale = (request.values.get("locale") or "en").strip()
        if not NAME.match(name) or channel not in CHANNELS or not LOCALE.fullmatch(locale):
            flash(_("A template needs a name (lower-case letters, digits and _), a channel and a locale such as en "
                    "or es_MX."), "error")
            return redirect(url_for(".index"))
        template = db.session.scalar(sa.select(MessageTemplate).where(
            MessageTemplate.name == name, MessageTemplate.channel == channel, MessageTemplate.locale == locale))
        subject, body, html, origin = starting_text(template, name, channel, locale)
        problems: list[Any] = []
        if request.method == "POST":
            subject = request.form.get("subject") if channel == Channel.EMAIL else None
            body = request.form.get("body", "")
            html = (request.form.get("html") or None) if channel == Channel.EMAIL else None
            try:
                version = save_template(name, channel, locale, body=body, subject=subject, html=html,
                                        actor=current_user)
            except TemplateRefused as exc:
                problems = exc.problems
                flash(_("Not saved: the template would fail for some customers. See the problems below."), "error")
            else:
                flash(_("Saved as version %(n)d.", n=version.number), "success")
                return redirect(url_for(".edit", name=name, channel=channel, locale=locale))
        versions = list(reversed(template.versions)) if template else []
        authors = {u.id: u for u in db.session.scalars(sa.select(User).where(
            User.id.in_({v.created_by_id for v in versions if v.created_by_id})))} if versions else {}
        return self.render("admin/msgtemplates/edit.html", name=name, channel=channel, locale=locale,
                           row=template, subject=subject, body=body, html=html, problems=problems, origin=origin,
                           versions=versions, authors=authors, can_write=self.can_write,
                           product_types=PRODUCT_TYPES)

    @expose("/whatsapp/submit/<int:template_id>", methods=["POST"])
    def whatsapp_submit(self, template_id: int) -> Any:
        return self._whatsapp(template_id, lambda: submit_whatsapp_template(template_id, actor=current_user),
                              _("Submitted to WhatsApp: Meta is reviewing it (status %(status)s)."))

    @expose("/whatsapp/refresh/<int:template_id>", methods=["POST"])
    def whatsapp_refresh(self, template_id: int) -> Any:
        return self._whatsapp(template_id, lambda: refresh_whatsapp_status(template_id, actor=current_user),
                              _("WhatsApp status: %(status)s."))

    def _whatsapp(self, template_id: int, action: Any, message: str) -> Any:
        template = db.session.get(MessageTemplate, template_id)
        if template is None:
            flash(_("There is no such template."), "error")
            return redirect(url_for(".index"))
        back = url_for(".edit", name=template.name, channel=template.channel, locale=template.locale)
        try:
            done = action()
        except WhatsAppTemplateError as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            flash(message % {"status": done.whatsapp_status or "—"}, "success")
        return redirect(back)

    @expose("/preview", methods=["POST"])
    def preview_json(self) -> Any:
        data = request.get_json(silent=True) or {}
        channel = data.get("channel")
        if channel not in CHANNELS or not isinstance(data.get("body"), str):
            return jsonify({"error": "send channel and body"}), 400
        return jsonify(preview(channel, data.get("subject"), data["body"], data.get("html"),
                               str(data.get("locale") or "en"), str(data.get("product_type") or "subscription")))
