"""Business rules kept as settings: contact windows by region, value bands, product types, FX rates, four-eyes."""

from __future__ import annotations

import json
from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin.i18n import _l
from admin.security import EVERYONE, RoleGuard
from app.extensions import db
from app.models import Setting
from app.settings import EDITABLE, SettingRefused, get_setting, save_setting

HELP = {
    "contact_windows": (_l("Contact windows by region"),
                        _l("Business hours, quiet hours and blackout dates, in the customer's own time zone. "
                           "“*” applies everywhere; a country (US) or region (US-FL) overrides it.")),
    "value_bands": (_l("Value bands"),
                    _l("Amount bands per currency, lower bounds in cents. null = the built-in bands.")),
    "product_rules": (_l("Product type rules"),
                      _l("SKU patterns or words in the description that say what was sold; the first match wins.")),
    "default_product_type": (_l("Product type when no rule matches"), _l("For example one_time.")),
    "fx_rates": (_l("Exchange rates"),
                 _l("What one unit of each currency is worth in the base currency; policies compare amounts "
                    "through these.")),
    "policy_four_eyes": (_l("Four-eyes approval"),
                         _l("true: a policy version must be approved by someone other than its author.")),
}


class SettingsView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = ("admin",)

    @expose("/")
    def index(self) -> Any:
        rows = []
        drafts = _pending_input()
        for key in EDITABLE:
            stored = db.session.get(Setting, key)
            text = drafts.get(key) or json.dumps(get_setting(key), indent=2, ensure_ascii=False)
            rows.append({"key": key, "title": HELP[key][0], "help": HELP[key][1], "text": text,
                         "updated_by": stored.updated_by if stored else None,
                         "updated_at": stored.updated_at if stored else None})
        return self.render("admin/settings/index.html", rows=rows, can_write=self.can_write,
                           error_key=request.args.get("error"))

    @expose("/<key>", methods=["POST"])
    def save(self, key: str) -> Any:
        if key not in EDITABLE:
            flash(_("There is no such setting."), "error")
            return redirect(url_for(".index"))
        raw = request.form.get("value", "")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            flash(_("%(title)s was not saved: line %(line)d, column %(col)d: %(msg)s", title=HELP[key][0],
                    line=exc.lineno, col=exc.colno, msg=exc.msg), "error")
            return _back_with(key, raw)
        try:
            save_setting(key, value, actor=current_user.email)
        except SettingRefused as exc:
            db.session.rollback()
            flash(_("%(title)s was not saved: %(msg)s", title=HELP[key][0], msg=str(exc)), "error")
            return _back_with(key, raw)
        flash(_("%(title)s saved.", title=HELP[key][0]), "success")
        return redirect(url_for(".index", _anchor=f"setting-{key}"))


def _pending_input() -> dict[str, str]:
    from flask import session

    return session.pop("recoup_setting_draft", None) or {}


def _back_with(key: str, raw: str) -> Any:
    from flask import session

    session["recoup_setting_draft"] = {key: raw[:20000]}
    return redirect(url_for(".index", error=key, _anchor=f"setting-{key}"))
