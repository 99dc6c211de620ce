"""The business-rule settings as forms: one form per section, a row per region, band, rule or rate.

Each section turns a stored value into its form's data (``*_data``) and a submitted form back into the value(s) to store
(``values``). Checks that belong to one field put their message on that field; ``app.settings.validate_setting``
checks the whole value again before anything is stored, so the rules are the service's, not the form's. Blank rows
are ignored (two are offered for adding); a row is removed by ticking its box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import get_currency_precision
from flask_babel import gettext as _
from wtforms import BooleanField, FieldList, Form, FormField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from admin.i18n import _l
from admin.security import CsrfForm
from rules.vocabulary import CHANNELS

BLANK_ROWS = 2
REGION = re.compile(r"^(\*|[A-Z]{2}(-[A-Z0-9]{1,3})?)$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
PRODUCT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _blank(row: Any) -> bool:
    return all(not (f.data or "").strip() for f in row if isinstance(f, StringField))


def live_rows(form: Any) -> list[Any]:
    """The rows that count: not blank, not ticked for removal."""
    return [entry.form for entry in form.rows if not entry.form.remove.data and not _blank(entry.form)]


def _after_colon(message: str) -> str:
    """The rules core says where (``"*" quiet hours: ...``); next to the field only the what is needed."""
    return message.split(": ", 1)[-1]


# -- contact windows ---------------------------------------------------------------------------------------------
class WindowRow(Form):
    region = StringField(_l("Region"), filters=[_upper], validators=[Length(max=10)])
    business_hours = StringField(_l("Business hours"), filters=[_stripped], validators=[Length(max=200)])
    quiet_hours = StringField(_l("Quiet hours"), filters=[_stripped], validators=[Length(max=20)])
    blackout_dates = StringField(_l("Blackout dates"), filters=[_stripped], validators=[Length(max=2000)])
    remove = BooleanField(_l("Remove"))


class ContactWindowsForm(CsrfForm):
    rows = FieldList(FormField(WindowRow))


def _check_window_part(row: Any, name: str) -> None:
    from rules.contact_settings import ContactWindowsError, parse_contact_windows

    field = getattr(row, name)
    if field.data:
        try:
            parse_contact_windows({"*": {name: field.data}})
        except ContactWindowsError as exc:
            field.errors.append(_after_colon(str(exc)))


def _dates(row: Any) -> list[str]:
    days = [d for d in re.split(r"[\s,;]+", row.blackout_dates.data or "") if d]
    bad = []
    for day in days:
        try:
            date.fromisoformat(day)
        except ValueError:
            bad.append(day)
    if bad:
        row.blackout_dates.errors.append(_("%(dates)s: write dates as 2026-12-25, separated by commas",
                                           dates=", ".join(bad)))
    return sorted(set(days))


def windows_values(form: ContactWindowsForm) -> dict[str, Any] | None:
    windows: dict[str, Any] = {}
    for row in live_rows(form):
        region = row.region.data or ""
        if not REGION.match(region):
            row.region.errors.append(_("Use * (everywhere), a country such as US or a region such as US-FL."))
        elif region in windows:
            row.region.errors.append(_("%(region)s is listed twice.", region=region))
        for name in ("business_hours", "quiet_hours"):
            _check_window_part(row, name)
        entry = {k: getattr(row, k).data for k in ("business_hours", "quiet_hours") if getattr(row, k).data}
        days = _dates(row)
        if days:
            entry["blackout_dates"] = days
        windows[region] = entry
    if not windows:
        form.form_errors.append(_("Keep at least one region; * applies everywhere."))
    return windows


def windows_data(value: dict[str, Any] | None) -> dict[str, Any]:
    rows = [{"region": region, "business_hours": entry.get("business_hours") or "",
             "quiet_hours": entry.get("quiet_hours") or "",
             "blackout_dates": ", ".join(entry.get("blackout_dates") or [])}
            for region, entry in sorted((value or {}).items(), key=lambda kv: (kv[0] != "*", kv[0]))]
    return {"rows": rows}


# -- value bands ---------------------------------------------------------------------------------------------------
class BandRow(Form):
    currency = StringField(_l("Currency"), filters=[_upper], validators=[Length(max=3)])
    name = StringField(_l("Band"), filters=[_stripped], validators=[Length(max=16)])
    lower = StringField(_l("From (amount)"), filters=[_stripped], validators=[Length(max=20)])
    remove = BooleanField(_l("Remove"))


class ValueBandsForm(CsrfForm):
    builtin = BooleanField(_l("Use the built-in bands"),
                           description=_l("Untick to use the bands below instead."))
    rows = FieldList(FormField(BandRow))


def _precision(currency: str) -> int:
    return 2 if currency == "*" else get_currency_precision(currency)


def _lower_minor(row: Any) -> int | None:
    currency = row.currency.data or ""
    if currency != "*" and not CURRENCY.match(currency):
        row.currency.errors.append(_("A currency code such as USD, or * for any other currency."))
        return None
    try:
        amount = Decimal(row.lower.data or "")
    except InvalidOperation:
        row.lower.errors.append(_("An amount such as 20.00."))
        return None
    minor = amount.scaleb(_precision(currency))
    if amount < 0 or minor != minor.to_integral_value():
        row.lower.errors.append(_("A positive amount with at most %(n)d decimals.", n=_precision(currency)))
        return None
    return int(minor)


def bands_values(form: ValueBandsForm) -> dict[str, Any] | None:
    if form.builtin.data:
        return None
    by_currency: dict[str, list[tuple[int, Any]]] = {}
    for row in live_rows(form):
        if not row.name.data:
            row.name.errors.append(_("Name the band, e.g. high."))
        lower = _lower_minor(row)
        if lower is not None:
            by_currency.setdefault(row.currency.data, []).append((lower, row))
    bands: dict[str, list[list[Any]]] = {}
    for currency, rows in by_currency.items():
        rows.sort(key=lambda pair: pair[0])
        if rows[0][0] != 0:
            rows[0][1].lower.errors.append(_("The lowest band of %(currency)s must start at 0.", currency=currency))
        for (low, _row), (high, row) in zip(rows, rows[1:], strict=False):
            if high == low:
                row.lower.errors.append(_("Two bands of %(currency)s start at the same amount.", currency=currency))
        bands[currency] = [[row.name.data, lower] for lower, row in rows]
    if not bands:
        form.form_errors.append(_("Add at least one band, or tick “Use the built-in bands”."))
    return bands


def bands_data(value: dict[str, Any] | None) -> dict[str, Any]:
    from rules.product_types import DEFAULT_BANDS

    table = value if value is not None else {c: [list(b) for b in bands] for c, bands in DEFAULT_BANDS.items()}
    rows = [{"currency": currency, "name": name,
             "lower": str(Decimal(int(lower)).scaleb(-_precision(currency)))}
            for currency, bands in sorted(table.items(), key=lambda kv: (kv[0] == "*", kv[0]))
            for name, lower in bands]
    return {"builtin": value is None, "rows": rows}


# -- product types -------------------------------------------------------------------------------------------------
class ProductRuleRow(Form):
    match = SelectField(_l("Match"), choices=[("sku", _l("SKU pattern")), ("keyword", _l("Words in the description"))])
    pattern = StringField(_l("Pattern or words"), filters=[_stripped], validators=[Length(max=100)])
    type = StringField(_l("Product type"), filters=[_stripped], validators=[Length(max=32)])
    remove = BooleanField(_l("Remove"))


class ProductTypesForm(CsrfForm):
    rows = FieldList(FormField(ProductRuleRow))
    default_product_type = StringField(_l("Product type when no rule matches"), filters=[_stripped],
                                       validators=[Length(max=32)])


def _product_type_ok(field: Any) -> bool:
    if not PRODUCT_TYPE.match(field.data or ""):
        field.errors.append(_("Lower-case letters, digits and _, such as subscription."))
        return False
    return True


def product_values(form: ProductTypesForm) -> dict[str, Any] | None:
    rules = []
    for row in live_rows(form):
        if not row.pattern.data:
            row.pattern.errors.append(_("Write a SKU pattern such as SUB-* or the words to look for."))
        _product_type_ok(row.type)
        rules.append({row.match.data: row.pattern.data, "type": row.type.data})
    _product_type_ok(form.default_product_type)
    return {"product_rules": rules, "default_product_type": form.default_product_type.data}


def product_data(rules: list[dict[str, Any]] | None, default: str | None) -> dict[str, Any]:
    rows = [{"match": "sku" if rule.get("sku") else "keyword", "pattern": rule.get("sku") or rule.get("keyword"),
             "type": rule.get("type")} for rule in rules or []]
    return {"rows": rows, "default_product_type": default or ""}


# -- exchange rates ------------------------------------------------------------------------------------------------
class RateRow(Form):
    currency = StringField(_l("Currency"), filters=[_upper], validators=[Length(max=3)])
    rate = StringField(_l("Worth in the base currency"), filters=[_stripped], validators=[Length(max=30)])
    remove = BooleanField(_l("Remove"))


class FxRatesForm(CsrfForm):
    base = StringField(_l("Base currency"), filters=[_upper], validators=[Length(max=3)],
                       description=_l("Policies compare amounts in this currency, e.g. USD."))
    rows = FieldList(FormField(RateRow))


def _currency_ok(field: Any) -> bool:
    from rules.money import is_currency

    if not is_currency(field.data or ""):
        field.errors.append(_("“%(code)s” is not a currency code (ISO 4217, such as EUR).", code=field.data or ""))
        return False
    return True


def fx_values(form: FxRatesForm) -> dict[str, Any] | None:
    _currency_ok(form.base)
    rates: dict[str, str] = {}
    for row in live_rows(form):
        if _currency_ok(row.currency):
            if row.currency.data == form.base.data:
                row.currency.errors.append(_("The base currency is worth 1 by definition: remove this row."))
            elif row.currency.data in rates:
                row.currency.errors.append(_("%(code)s is listed twice.", code=row.currency.data))
        try:
            rate = Decimal(row.rate.data or "")
            if not rate.is_finite() or rate <= 0:
                raise InvalidOperation
        except InvalidOperation:
            row.rate.errors.append(_("A positive number such as 1.08 (a dot for decimals)."))
        else:
            rates[row.currency.data] = format(rate, "f")
    return {"base": form.base.data, "rates": rates}


def fx_data(value: dict[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    rows = [{"currency": code, "rate": str(rate)} for code, rate in sorted((value.get("rates") or {}).items())]
    return {"base": value.get("base") or "", "rows": rows}


# -- what messages cost ----------------------------------------------------------------------------------------------
class MessageCostsForm(CsrfForm):
    currency = StringField(_l("Currency of the prices"), filters=[_upper], validators=[Length(max=3)],
                           description=_l("Leave everything empty to show no costs."))
    email = StringField(_l("One email"), filters=[_stripped], validators=[Length(max=20)])
    sms = StringField(_l("One SMS"), filters=[_stripped], validators=[Length(max=20)])
    whatsapp = StringField(_l("One WhatsApp message"), filters=[_stripped], validators=[Length(max=20)])


def costs_values(form: MessageCostsForm) -> dict[str, Any] | None:
    channels = tuple(str(c) for c in CHANNELS)  # the form's fields are named after the channels
    if not form.currency.data and not any(form[c].data for c in channels):
        return None
    _currency_ok(form.currency)
    prices: dict[str, str] = {}
    for channel in channels:
        raw = form[channel].data
        if not raw:
            continue
        try:
            price = Decimal(raw)
            if not price.is_finite() or price < 0:
                raise InvalidOperation
        except InvalidOperation:
            form[channel].errors.append(_("A price such as 0.0079 (a dot for decimals), or empty."))
        else:
            prices[channel] = format(price, "f")
    return {"currency": form.currency.data, "prices": prices}


def costs_data(value: dict[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    prices = value.get("prices") or {}
    return {"currency": value.get("currency") or "", **{str(c): prices.get(str(c), "") for c in CHANNELS}}


# -- how recoveries are credited --------------------------------------------------------------------------------------
class AttributionForm(CsrfForm):
    attribution_window_hours = IntegerField(
        _l("Attribution window (hours)"),
        validators=[InputRequired(_l("A whole number of hours, such as 72.")),
                    NumberRange(min=1, max=720, message=_l("From 1 to 720 hours (30 days)."))],
        description=_l("A recovery is credited to the last message or retry sent within this many hours before the "
                       "payment; with none, it counts as organic."))


# -- approval ------------------------------------------------------------------------------------------------------
class FourEyesForm(CsrfForm):
    policy_four_eyes = BooleanField(_l("A policy or message template version must be approved by someone other "
                                       "than its author"))


# -- the merchant, as customers see it -----------------------------------------------------------------------------
class MerchantForm(CsrfForm):
    merchant_name = StringField(_l("Shop name"), filters=[_stripped], validators=[Optional(), Length(max=100)])
    merchant_logo_url = StringField(_l("Logo (web address)"), filters=[_stripped],
                                    validators=[Optional(), Length(max=500)])
    merchant_brand_colour = StringField(_l("Brand colour"), filters=[_stripped],
                                        description=_l("For example #1d4ed8"))
    merchant_website_url = StringField(_l("Website"), filters=[_stripped], validators=[Optional(), Length(max=500)])
    merchant_support_email = StringField(_l("Support email"), filters=[_stripped],
                                         validators=[Optional(), Length(max=254)])


def merchant_values(form: MerchantForm) -> dict[str, Any]:
    from app.messages.merchant import MerchantSettingRefused, validate_merchant_setting

    values = {}
    for field in form:
        if field.short_name == "csrf_token":
            continue
        try:
            values[field.short_name] = validate_merchant_setting(field.short_name, field.data or None)
        except MerchantSettingRefused as exc:
            field.errors.append(str(exc))
    return values


@dataclass(frozen=True)
class Section:
    key: str  # its URL, /admin/settings/<key>; the main setting it writes
    title: Any
    help: Any
    keys: tuple[str, ...]  # every setting it writes (saved together or not at all)
    form: type[CsrfForm]


def has_errors(form: Any) -> bool:
    return bool(form.form_errors) or any(_field_has_errors(f) for f in form)


def _field_has_errors(field: Any) -> bool:
    if isinstance(field, FieldList):
        return any(_field_has_errors(entry) for entry in field)
    if isinstance(field, FormField):
        return any(_field_has_errors(sub) for sub in field.form)
    return bool(field.errors)


def add_blank_rows(form: Any) -> Any:
    if hasattr(form, "rows"):
        for _n in range(BLANK_ROWS):
            form.rows.append_entry()
    return form
