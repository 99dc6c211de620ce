"""What the admin's templates share: people-friendly labels (translated), date formats, the language switch."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, dates
from flask import Flask
from flask_babel import format_date, get_locale
from flask_login import current_user

from admin.i18n import _l
from rules.case_states import CaseState
from rules.vocabulary import Channel, OutboxTask, PolicyStatus

ROLE_LABELS = {"admin": _l("admin"), "author": _l("author"), "approver": _l("approver"), "operator": _l("operator"),
               "auditor": _l("auditor")}
#: what each role is for, as the user and role pickers explain it (app.models.ROLES says it for the CLI)
ROLE_HELP = {"admin": _l("users, settings and secrets"), "author": _l("drafts of policies and templates; simulate"),
             "approver": _l("approves and activates versions someone else wrote"),
             "operator": _l("cases, customers and escalations"), "auditor": _l("reads everything, changes nothing")}
STATUS_LABELS = {PolicyStatus.PENDING_APPROVAL: _l("waiting for approval"),
                 PolicyStatus.APPROVED: _l("approved, not active"), PolicyStatus.ACTIVE: _l("running now"),
                 PolicyStatus.SUPERSEDED: _l("replaced"), PolicyStatus.REJECTED: _l("rejected")}
CASE_STATE_LABELS = {CaseState.OPEN: _l("Open"), CaseState.CONTACTING: _l("Contacting"),
                     CaseState.ESCALATED: _l("Escalated"), CaseState.RECOVERED: _l("Recovered"),
                     CaseState.EXPIRED: _l("Expired"), CaseState.CANCELLED: _l("Cancelled")}
CHANNEL_LABELS = {Channel.EMAIL: _l("Email"), Channel.SMS: _l("SMS"), Channel.WHATSAPP: _l("WhatsApp"),
                  OutboxTask.PAYMENT_RETRY: _l("Payment retry"), OutboxTask.ESCALATION: _l("Escalation")}
REASON_LABELS = {"legal_window": _l("Legal contact window"), "quiet_hours": _l("Quiet hours"),
                 "business_hours": _l("Outside business hours"), "holiday": _l("Public holiday"),
                 "weekend": _l("Weekend"), "blackout": _l("Blackout date"),
                 "cadence": _l("Too many contacts (cadence cap)")}


def _label(table: dict[str, Any]):  # type: ignore[no-untyped-def]
    def label(value: Any) -> str:
        return str(table.get(value, value if value is not None else "—"))

    return label


def user_zone() -> ZoneInfo:
    """The signed-in person's time zone (their profile), else UTC."""
    name = getattr(current_user, "timezone", None) if getattr(current_user, "is_authenticated", False) else None
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def zone_label(moment: datetime) -> str:
    """``UTC``, ``EST``, ``CET``; a zone without an abbreviation shows its offset (``UTC-03``)."""
    label = moment.tzname() or "UTC"
    return f"UTC{label}" if label[:1] in "+-" else label


def when(value: datetime | str | None, zone: str | None = None) -> str:
    """A moment as people read it: "Dec 6, 2026, 4:31 AM UTC" (no seconds), in ``zone`` or the reader's own."""
    if isinstance(value, str):  # ISO 8601 as plans store it
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not value:
        return "—"
    try:
        tz = ZoneInfo(zone) if zone else user_zone()
    except (ZoneInfoNotFoundError, ValueError):
        tz = user_zone()
    local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(tz)
    locale = get_locale() or "en"
    pattern = Locale.parse(str(locale)).datetime_formats["medium"]
    text = str(pattern).format(dates.format_time(local, "short", locale=locale),
                               dates.format_date(local, "medium", locale=locale))
    return f"{text} {zone_label(local)}"


def iso_utc(value: datetime) -> str:
    """A moment for machines (exports): ISO 8601 in UTC, to the second: ``2026-12-06T04:31:22Z``."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def day(value: date | None) -> str:
    return format_date(value, "medium") if value else "—"


def init_ui(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["day"] = day
    app.jinja_env.filters["role_label"] = _label(ROLE_LABELS)
    app.jinja_env.globals.update(
        status_label=_label(STATUS_LABELS), channel_label=_label(CHANNEL_LABELS),
        case_state_label=_label(CASE_STATE_LABELS),
        reason_label=_label(REASON_LABELS), role_label=_label(ROLE_LABELS), get_locale=get_locale,
    )

    @app.context_processor
    def _personal_data() -> dict[str, Any]:
        # ``pii``: what this reader sees of customers' personal data; every template that shows a customer's name,
        # email, phone, address or what was said to them goes through it (app.accounts.pii)
        from admin.security import personal_data

        return {"pii": personal_data()}
