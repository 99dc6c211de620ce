"""People who sign in, and their roles (admins change them; auditors read them)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import gettext as _
from wtforms import PasswordField, SelectField
from wtforms.validators import Length, Optional, Regexp, StopValidation, ValidationError

from admin.i18n import _l
from admin.ui import ROLE_HELP, ROLE_LABELS
from admin.views import AuditedModelView
from app.models import User

EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Write an email address, such as ana@example.com."))
LANGUAGES = [("", _l("The browser's language")), ("en", "English"), ("es", "Español")]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _none_if_empty(value: Any) -> Any:
    return value.strip() or None if isinstance(value, str) else value


def role_choice(role: Any) -> str:
    """A role in the picker: its name as people say it, and what it is for."""
    label = str(ROLE_LABELS.get(role.name, role.name))
    help_text = ROLE_HELP.get(role.name) or role.description
    return f"{label}: {help_text}" if help_text else label


def new_password(form: Any, field: Any) -> None:
    """Required for a new user, optional on edit (empty keeps it); checked by the model's own rule, and hashed once
    here so that the save does not hash it again."""
    form._password_hash = None
    if not field.data:
        if getattr(form, "_obj", None) is None:
            raise StopValidation(_("A new user needs a password."))
        raise StopValidation()
    probe = User()
    try:
        probe.set_password(field.data)
    except ValueError as exc:
        raise StopValidation(_("At least 10 characters.") if "10" in str(exc) else str(exc)) from None
    form._password_hash = probe.password_hash


def time_zone(form: Any, field: Any) -> None:
    if field.data:
        try:
            ZoneInfo(field.data)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(_("“%(zone)s” is not a time zone (try Europe/Madrid or America/New_York).",
                                    zone=field.data)) from None


class UserView(AuditedModelView):
    read_roles = ("admin", "auditor")
    write_roles = ("admin",)
    export_roles = ("admin", "auditor")
    column_list = ("email", "name", "roles", "active", "locale", "timezone", "last_login_at", "locked_until")
    column_details_list = ("email", "name", "roles", "active", "locale", "timezone", "last_login_at",
                           "locked_until", "failed_logins", "created_at")
    column_labels = {"email": _l("Email"), "name": _l("Name"), "roles": _l("Roles"), "active": _l("Can sign in"),
                     "locale": _l("Language"), "timezone": _l("Time zone"), "last_login_at": _l("Last sign-in"),
                     "locked_until": _l("Locked until"), "failed_logins": _l("Failed sign-ins in a row"),
                     "created_at": _l("Created")}
    column_formatters = {"roles": lambda v, c, m, n: ", ".join(sorted(str(ROLE_LABELS.get(r.name, r.name))
                                                                      for r in m.roles))}
    column_formatters_export = {"roles": lambda v, c, m, n: ", ".join(sorted(r.name for r in m.roles))}
    column_searchable_list = ("email", "name")
    column_export_exclude_list = ("password_hash",)
    form_columns = ("email", "name", "roles", "active", "locale", "timezone", "password")
    form_overrides = {"locale": SelectField}
    form_args = {
        "email": {"label": _l("Email"), "filters": [_lower], "validators": [EMAIL]},
        "name": {"label": _l("Name"), "filters": [_none_if_empty]},
        "roles": {"label": _l("Roles"), "get_label": role_choice,
                  "description": _l("What this person may do.")},
        "active": {"label": _l("Can sign in")},
        "locale": {"label": _l("Language"), "choices": LANGUAGES, "filters": [_none_if_empty]},
        "timezone": {"label": _l("Time zone"), "filters": [_none_if_empty],
                     "validators": [Optional(), Length(max=64), time_zone],
                     "description": _l("Times in the admin are shown in this zone (empty: UTC).")},
    }
    form_extra_fields = {"password": PasswordField(_l("New password"), validators=[new_password],
                                                   description=_l("At least 10 characters. Leave empty to keep it."))}
    audit_hidden_fields = ("password",)

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        hashed = getattr(form, "_password_hash", None)
        if hashed:
            model.password_hash = hashed
        super().on_model_change(form, model, is_created)
