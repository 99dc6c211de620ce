"""Business rules kept as settings, edited as forms: contact windows by region, value bands, product types, exchange
rates, four-eyes approval, and the merchant as customers see it.

Each section is one form and is saved whole or not at all (app.settings.save_settings); a refused field says why
next to itself, the rest of the typed form is kept to fix, and every change is audited (setting.update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from admin import settings_forms as sf
from admin.i18n import _l
from admin.security import EVERYONE, RoleGuard
from app.extensions import db
from app.models import Setting
from app.settings import EDITABLE, SettingRefused, get_setting, save_settings


@dataclass(frozen=True)
class Section:
    key: str  # its URL (/admin/settings/<key>) and the main setting it writes
    title: Any
    help: Any
    keys: tuple[str, ...]  # every setting it writes, saved together
    stored: Callable[[], dict[str, Any]]  # the stored values as the form's data
    read: Callable[[Any], dict[str, Any]]  # a submitted form -> {setting: value}; field errors put on the form
    form: type

    @property
    def prefix(self) -> str:  # several sections have rows: their fields' ids must differ on the one page
        return f"{self.key}-"


SECTIONS: tuple[Section, ...] = (
    Section("contact_windows", _l("Contact windows by region"),
            _l("When customers may be contacted, in their own time zone. The row * applies everywhere; a country "
               "(US) or region (US-FL) row overrides it. Business hours look like “mon-fri 09:00-18:00, sat "
               "10:00-14:00”, quiet hours like “21:00-08:00”, blackout dates like “2026-12-24, 2026-12-25”. "
               "A policy's own statements win over these."),
            ("contact_windows",), lambda: sf.windows_data(get_setting("contact_windows")),
            lambda form: {"contact_windows": sf.windows_values(form)}, sf.ContactWindowsForm),
    Section("value_bands", _l("Value bands"),
            _l("How large a failed payment is, per currency: each band starts at its amount and runs to the next "
               "one. The row * serves currencies without bands of their own."),
            ("value_bands",), lambda: sf.bands_data(get_setting("value_bands")),
            lambda form: {"value_bands": sf.bands_values(form)}, sf.ValueBandsForm),
    Section("product_rules", _l("Product types"),
            _l("What was sold, from the order's SKU or description: the first rule that matches wins."),
            ("product_rules", "default_product_type"),
            lambda: sf.product_data(get_setting("product_rules"), get_setting("default_product_type")),
            sf.product_values, sf.ProductTypesForm),
    Section("fx_rates", _l("Exchange rates"),
            _l("What one unit of each currency is worth in the base currency; policies compare amounts through "
               "these."),
            ("fx_rates",), lambda: sf.fx_data(get_setting("fx_rates")),
            lambda form: {"fx_rates": sf.fx_values(form)}, sf.FxRatesForm),
    Section("message_costs", _l("What messages cost"),
            _l("The price of one message per channel, as your providers charge it: the dashboard shows each "
               "channel's cost and what was recovered net of it."),
            ("message_costs",), lambda: sf.costs_data(get_setting("message_costs")),
            lambda form: {"message_costs": sf.costs_values(form)}, sf.MessageCostsForm),
    Section("attribution", _l("How recoveries are credited"),
            _l("The dashboard credits each recovery to the last touch before the payment within this window, and "
               "also counts every channel that touched it. Changing it counts the history again."),
            ("attribution_window_hours",),
            lambda: {"attribution_window_hours": get_setting("attribution_window_hours")},
            lambda form: {"attribution_window_hours": form.attribution_window_hours.data}, sf.AttributionForm),
    Section("policy_four_eyes", _l("Four-eyes approval"),
            _l("When on, nobody approves a policy version or a message template version they wrote themselves, "
               "and a saved template reaches customers only once someone else approves it."),
            ("policy_four_eyes",),
            lambda: {"policy_four_eyes": bool(get_setting("policy_four_eyes"))},
            lambda form: {"policy_four_eyes": bool(form.policy_four_eyes.data)}, sf.FourEyesForm),
    Section("merchant", _l("Your shop, as customers see it"),
            _l("Shown in messages, on the payment page and on the receipt. Empty fields use the server's "
               "configuration."),
            tuple(k for k in EDITABLE if k.startswith("merchant_")),
            lambda: {k: get_setting(k) or "" for k in EDITABLE if k.startswith("merchant_")},
            sf.merchant_values, sf.MerchantForm),
)
BY_KEY = {s.key: s for s in SECTIONS if s.keys and set(s.keys) <= set(EDITABLE)}


class SettingsView(RoleGuard, BaseView):
    read_roles = EVERYONE
    write_roles = ("admin",)

    def _page(self, submitted: tuple[str, Any] | None = None, status: int = 200) -> Any:
        rows = []
        for section in BY_KEY.values():
            if submitted and submitted[0] == section.key:
                form = submitted[1]  # as typed, its blank rows included
            else:
                form = section.form(data=section.stored(), prefix=section.prefix)
                if self.can_write:
                    sf.add_blank_rows(form)
            rows.append({"section": section, "form": form,
                         "stored": _last_change(section.keys), "failed": bool(submitted) and submitted[1] is form})
        return self.render("admin/settings/index.html", rows=rows, can_write=self.can_write), status

    @expose("/")
    def index(self) -> Any:
        return self._page()

    @expose("/<key>", methods=["POST"])
    def save(self, key: str) -> Any:
        section = BY_KEY.get(key)
        if section is None:
            abort(404)
        form = section.form(request.form, prefix=section.prefix)
        form.validate()
        values = section.read(form)
        if not sf.has_errors(form):
            try:
                save_settings(values, actor=current_user.email)
            except SettingRefused as exc:
                db.session.rollback()
                form.form_errors.append(str(exc))
        if sf.has_errors(form):
            flash(_("%(title)s: not saved, nothing was changed. See the marked fields.", title=section.title), "error")
            return self._page((key, form), 400)
        flash(_("%(title)s saved.", title=section.title), "success")
        return redirect(url_for(".index", _anchor=f"setting-{key}"))


def _last_change(keys: tuple[str, ...]) -> Setting | None:
    stored = [row for row in (db.session.get(Setting, k) for k in keys) if row is not None and row.updated_at]
    return max(stored, key=lambda row: row.updated_at) if stored else None
