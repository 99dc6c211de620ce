"""Message templates per channel and locale: versions and their four-eyes approval, live preview on sample facts,
SMS segments, WhatsApp status. Every change goes through ``app.messages.templates_service`` (which audits it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, flash, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin.i18n import _l
from admin.security import EVERYONE, RoleGuard, has_role, requires
from app.extensions import db
from app.messages.default_templates import DEFAULTS, language_of
from app.messages.merchant import merchant_profile
from app.messages.templates_service import (
    TEMPLATE_APPROVERS,
    TEMPLATE_WRITERS,
    TemplateRefused,
    TemplateReviewError,
    WhatsAppTemplateError,
    approve_template_version,
    latest_version,
    refresh_whatsapp_status,
    reject_template_version,
    resolve_template,
    save_template,
    submit_template_version,
    submit_whatsapp_template,
)
from app.messages.templating import PRODUCT_TYPES, normalise_locale, render, sample_context, validate_template
from app.messages.templating import MessageTemplate as Source
from app.models import MessageTemplate, MessageTemplateVersion, User
from app.settings import four_eyes_required
from rules.vocabulary import Channel, TemplateStatus

WRITERS = TEMPLATE_WRITERS
APPROVERS = TEMPLATE_APPROVERS
CHANNELS = tuple(c.value for c in Channel)
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LOCALE = re.compile(r"[A-Za-z]{2}([_-][A-Za-z]{2})?")
STATUS_LABELS = {TemplateStatus.DRAFT: _l("draft"), TemplateStatus.PENDING_APPROVAL: _l("waiting for approval"),
                 TemplateStatus.APPROVED: _l("approved"), TemplateStatus.REJECTED: _l("rejected")}
SAMPLE_SHORT_CODE = "Ab3dEf6hIj"  # as long as a real short link's code (app.payments.links.SHORT_LENGTH)


@dataclass(frozen=True)
class CatalogueRow:
    """One line of the templates list: a template the merchant saved, or a built-in nobody has customised."""

    name: str
    channel: str
    locale: str
    row: MessageTemplate | None = None  # None: the built-in is what customers get
    waiting: MessageTemplateVersion | None = None  # a newer version not live yet (a draft or waiting for approval)


def catalogue(channel: str | None) -> list[CatalogueRow]:
    """Every template customers can get: the saved ones, and each built-in not customised in its language."""
    query = sa.select(MessageTemplate)
    if channel:
        query = query.where(MessageTemplate.channel == channel)
    saved = list(db.session.scalars(query))
    # a saved template has its own line from its first version on (until one is approved it says built-in there)
    covered = {(t.name, t.channel, language_of(t.locale)) for t in saved if t.versions}
    rows = [CatalogueRow(t.name, t.channel, t.locale, t, waiting(t)) for t in saved]
    rows += [CatalogueRow(name, ch, language) for name, ch, language in DEFAULTS
             if (not channel or ch == channel) and (name, ch, language) not in covered]
    return sorted(rows, key=lambda r: (r.name, CHANNELS.index(r.channel), r.locale))


def waiting(template: MessageTemplate | None) -> MessageTemplateVersion | None:
    """The newest version when it is newer than the live one and still a draft or waiting for approval."""
    newest = latest_version(template)
    live = template.current_version if template is not None else None
    if newest is None or newest.status not in (TemplateStatus.DRAFT, TemplateStatus.PENDING_APPROVAL):
        return None
    return newest if live is None or newest.number > live.number else None


def starting_text(template: MessageTemplate | None, name: str, channel: str, locale: str) -> tuple[Any, ...]:
    """What the editor shows before anything is typed: the newest saved version (live or not: the author goes on
    from their last text), else the live text customers in this locale receive now. And where it is from: ``saved``
    (this template), ``other`` (the merchant's text for another locale of the language, or English), ``builtin``
    (this name's built-in) or ``fallback`` (a name without a built-in: what a policy naming it sends today)."""
    current = latest_version(template)
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


def template_status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def review_refusal(exc: TemplateReviewError) -> str:
    """A refused review step, in the reader's language."""
    n = exc.number or 0
    if exc.reason == "own_version":
        return _("You cannot approve your own version: someone else with the approver role must approve version "
                 "%(n)d.", n=n)
    if exc.reason == "not_draft":
        return _("Version %(n)d was submitted already.", n=n)
    if exc.reason == "not_pending":
        return _("Version %(n)d is not waiting for approval.", n=n)
    if exc.reason == "older_than_live":
        return _("Version %(n)d is older than the live version: save its text again to bring it back.", n=n)
    if exc.reason == "no_reason":
        return _("Say why you reject this version.")
    if exc.reason == "not_allowed":
        return _("Your role does not allow this.")
    return _("There is no such template.")


class TemplateView(RoleGuard, BaseView):
    read_roles = EVERYONE
    # writers save and submit versions, approvers approve and reject them: each action names its own roles (the
    # preview too: rendering is work, so only those who write or approve templates ask for it)
    write_roles = WRITERS + APPROVERS

    @expose("/")
    def index(self) -> Any:
        channel = request.args.get("channel") or ""
        rows = catalogue(channel if channel in CHANNELS else None)
        return self.render("admin/msgtemplates/index.html", rows=rows, channel=channel,
                           channels=CHANNELS, can_write=has_role(*WRITERS),
                           template_status_label=template_status_label)

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
            if not has_role(*WRITERS):
                abort(403)
            subject = request.form.get("subject") if channel == Channel.EMAIL else None
            body = request.form.get("body", "")
            html = (request.form.get("html") or None) if channel == Channel.EMAIL else None
            try:
                version = save_template(name, channel, locale, body=body, subject=subject, html=html,
                                        actor=current_user, four_eyes=four_eyes_required())
            except TemplateRefused as exc:
                problems = exc.problems
                flash(_("Not saved: the template would fail for some customers. See the problems below."), "error")
            else:
                if version.status == TemplateStatus.APPROVED:
                    flash(_("Saved as version %(n)d.", n=version.number), "success")
                else:
                    flash(_("Saved as version %(n)d. It is a draft: customers keep receiving the live text until "
                            "you submit it and someone else approves it.", n=version.number), "success")
                return redirect(url_for(".edit", name=name, channel=channel, locale=locale))
        versions = list(reversed(template.versions)) if template else []
        authors = {u.id: u for u in db.session.scalars(sa.select(User).where(User.id.in_(
            {uid for v in versions for uid in (v.created_by_id, v.approved_by_id, v.rejected_by_id) if uid})))} \
            if versions else {}
        return self.render("admin/msgtemplates/edit.html", name=name, channel=channel, locale=locale,
                           row=template, subject=subject, body=body, html=html, problems=problems, origin=origin,
                           versions=versions, authors=authors, can_write=has_role(*WRITERS),
                           can_approve=has_role(*APPROVERS), four_eyes=four_eyes_required(), me=current_user.id,
                           waiting=waiting(template), status_label=template_status_label,
                           product_types=PRODUCT_TYPES)

    # -- four-eyes approval of a version -------------------------------------------------------------------------
    @expose("/versions/<int:version_id>/submit", methods=["POST"])
    @requires(*WRITERS)
    def submit_version(self, version_id: int) -> Any:
        return self._review(version_id, lambda: submit_template_version(version_id, actor=current_user),
                            _("Version %(n)d submitted: it goes out once someone else approves it."))

    @expose("/versions/<int:version_id>/approve", methods=["POST"])
    @requires(*APPROVERS)
    def approve_version(self, version_id: int) -> Any:
        return self._review(version_id, lambda: approve_template_version(
            version_id, actor=current_user, four_eyes=four_eyes_required()),
            _("Version %(n)d approved: customers receive it from now on."))

    @expose("/versions/<int:version_id>/reject", methods=["POST"])
    @requires(*APPROVERS)
    def reject_version(self, version_id: int) -> Any:
        return self._review(version_id, lambda: reject_template_version(
            version_id, actor=current_user, reason=request.form.get("reason") or ""),
            _("Version %(n)d rejected: it will never be sent."))

    def _review(self, version_id: int, action: Any, message: str) -> Any:
        version = db.session.get(MessageTemplateVersion, version_id)
        if version is None:
            flash(_("There is no such template."), "error")
            return redirect(url_for(".index"))
        template = version.template
        back = url_for(".edit", name=template.name, channel=template.channel, locale=template.locale)
        try:
            done = action()
        except TemplateReviewError as exc:
            db.session.rollback()
            flash(review_refusal(exc), "error")
        else:
            flash(message % {"n": done.number}, "success")
        return redirect(back)

    @expose("/whatsapp/submit/<int:template_id>", methods=["POST"])
    @requires(*WRITERS)
    def whatsapp_submit(self, template_id: int) -> Any:
        return self._whatsapp(template_id, lambda: submit_whatsapp_template(template_id, actor=current_user),
                              _("Submitted to WhatsApp: Meta is reviewing it (status %(status)s)."))

    @expose("/whatsapp/refresh/<int:template_id>", methods=["POST"])
    @requires(*WRITERS)
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
    @requires(*WRITERS, *APPROVERS)  # an approver sees what they approve
    def preview_json(self) -> Any:
        data = request.get_json(silent=True) or {}
        channel = data.get("channel")
        if channel not in CHANNELS or not isinstance(data.get("body"), str):
            return jsonify({"error": "send channel and body"}), 400
        return jsonify(preview(channel, data.get("subject"), data["body"], data.get("html"),
                               str(data.get("locale") or "en"), str(data.get("product_type") or "subscription")))
