"""The signed-in person's own page: who they are, their roles, their language and time zone, their password.

Not a business change: every role may do it (each change is still audited, by app.accounts.users).
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user, login_user
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, Optional, ValidationError

from admin.i18n import _l
from admin.security import EVERYONE, CsrfForm, RoleGuard
from admin.ui import ROLE_HELP
from admin.users import LANGUAGES, new_password, time_zone
from app.accounts.users import UserError, change_password, update_profile
from app.extensions import db


def _right_password(form: Any, field: Any) -> None:
    if field.data and not current_user.check_password(field.data):
        raise ValidationError(_("This is not your current password."))


class PreferencesForm(CsrfForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=100)])
    locale = SelectField(_l("Language"), choices=LANGUAGES)
    timezone = StringField(_l("Time zone"), validators=[Optional(), Length(max=64), time_zone],
                           description=_l("Times in the admin are shown in this zone, e.g. Europe/Madrid. "
                                          "Empty: UTC."))


class PasswordForm(CsrfForm):
    current_password = PasswordField(_l("Current password"), validators=[InputRequired(), _right_password])
    password = PasswordField(_l("New password"), validators=[InputRequired(), new_password],
                             description=_l("At least 10 characters."))
    confirm = PasswordField(_l("New password again"),
                            validators=[EqualTo("password", message=_l("The two new passwords differ."))])


class ProfileView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = EVERYONE

    def is_visible(self) -> bool:
        return False

    def _page(self, preferences: PreferencesForm | None = None, password: PasswordForm | None = None) -> Any:
        preferences = preferences or PreferencesForm(obj=current_user)
        password = password or PasswordForm()
        roles = sorted(r.name for r in current_user.roles)
        return self.render("admin/profile.html", preferences=preferences, password=password, roles=roles,
                           role_help=ROLE_HELP)

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/preferences", methods=["POST"])
    def preferences(self) -> Any:
        form = PreferencesForm(request.form)
        if not form.validate():
            flash(_("Not saved: see the fields marked in red."), "error")
            return self._page(preferences=form)
        update_profile(current_user, name=(form.name.data or "").strip(), locale=form.locale.data,
                       timezone=(form.timezone.data or "").strip())
        flash(_("Your preferences are saved."), "success")
        return redirect(url_for(".index"))

    @expose("/password", methods=["POST"])
    def password(self) -> Any:
        form = PasswordForm(request.form)
        if not form.validate():
            flash(_("Your password was not changed: see the fields marked in red."), "error")
            return self._page(password=form)
        try:
            change_password(current_user, form.current_password.data, form.password.data)
        except UserError:
            db.session.rollback()
            flash(_("Your password was not changed."), "error")
            return self._page(password=form)
        # the new password ended every session opened with the old one; this one goes on under the new version
        login_user(current_user._get_current_object())
        flash(_("Your password is changed."), "success")
        return redirect(url_for(".index"))

    @expose("/language", methods=["POST"])
    def language(self) -> Any:
        locale = request.form.get("locale", "")
        if locale in ("en", "es"):
            current_user.locale = locale
            db.session.commit()
        back = request.referrer or ""
        return redirect(back if back.startswith(request.host_url) else url_for("admin.index"))
