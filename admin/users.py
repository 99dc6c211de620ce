"""People who sign in, and their roles (admins change them; auditors read them)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from wtforms import PasswordField
from wtforms.validators import Optional

from admin.i18n import _l
from admin.views import AuditedModelView


class UserView(AuditedModelView):
    read_roles = ("admin", "auditor")
    write_roles = ("admin",)
    column_list = ("email", "name", "roles", "active", "locale", "last_login_at", "locked_until")
    column_details_list = ("email", "name", "roles", "active", "locale", "timezone", "last_login_at",
                           "locked_until", "failed_logins", "created_at")
    column_labels = {"email": _l("Email"), "name": _l("Name"), "roles": _l("Roles"), "active": _l("Can sign in"),
                     "locale": _l("Language"), "last_login_at": _l("Last sign-in"), "locked_until": _l("Locked until")}
    column_formatters = {"roles": lambda v, c, m, n: ", ".join(sorted(r.name for r in m.roles))}
    column_searchable_list = ("email", "name")
    form_columns = ("email", "name", "roles", "active", "locale", "password")
    form_extra_fields = {"password": PasswordField(_l("New password"), validators=[Optional()],
                                                   description=_l("At least 10 characters. Leave empty to keep it."))}
    audit_hidden_fields = ("password",)
    column_export_exclude_list = ("password_hash",)

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        model.email = (model.email or "").strip().lower()
        password = form.password.data or ""
        if is_created and not password:
            raise ValueError(_("A new user needs a password."))
        if password:
            model.set_password(password)  # ValueError (too short) is shown to the admin by Flask-Admin
        super().on_model_change(form, model, is_created)
