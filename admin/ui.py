"""What the admin's templates share: people-friendly labels (translated), date formats, the language switch."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Flask, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import format_date, format_datetime, get_locale
from flask_login import current_user

from admin.i18n import _l
from admin.security import EVERYONE, RoleGuard
from app.extensions import db

ROLE_LABELS = {"admin": _l("admin"), "author": _l("author"), "approver": _l("approver"), "operator": _l("operator"),
               "auditor": _l("auditor")}
STATUS_LABELS = {"pending_approval": _l("waiting for approval"), "approved": _l("approved, not active"),
                 "active": _l("running now"), "superseded": _l("replaced"), "rejected": _l("rejected")}
CHANNEL_LABELS = {"email": _l("Email"), "sms": _l("SMS"), "whatsapp": _l("WhatsApp"),
                  "payment_retry": _l("Payment retry"), "escalation": _l("Escalation")}
REASON_LABELS = {"legal_window": _l("Legal contact window"), "quiet_hours": _l("Quiet hours"),
                 "business_hours": _l("Outside business hours"), "holiday": _l("Public holiday"),
                 "weekend": _l("Weekend"), "blackout": _l("Blackout date"),
                 "cadence": _l("Too many contacts (cadence cap)")}


def _label(table: dict[str, Any]):  # type: ignore[no-untyped-def]
    def label(value: Any) -> str:
        return str(table.get(value, value if value is not None else "—"))

    return label


def when(value: datetime | str | None) -> str:
    if isinstance(value, str):  # ISO 8601 as plans store it
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return format_datetime(value, "medium") if value else "—"


def day(value: date | None) -> str:
    return format_date(value, "medium") if value else "—"


def init_ui(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["day"] = day
    app.jinja_env.filters["role_label"] = _label(ROLE_LABELS)
    app.jinja_env.globals.update(
        status_label=_label(STATUS_LABELS), channel_label=_label(CHANNEL_LABELS),
        reason_label=_label(REASON_LABELS), role_label=_label(ROLE_LABELS), get_locale=get_locale,
    )


class ProfileView(RoleGuard, BaseView):
    """The signed-in person's own preferences (language). Not a business change: every role may do it."""

    read_roles = EVERYONE
    write_roles = EVERYONE

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self) -> Any:
        return redirect(url_for("admin.index"))

    @expose("/language", methods=["POST"])
    def language(self) -> Any:
        locale = request.form.get("locale", "")
        if locale in ("en", "es"):
            current_user.locale = locale
            db.session.commit()
        back = request.referrer or ""
        return redirect(back if back.startswith(request.host_url) else url_for("admin.index"))
