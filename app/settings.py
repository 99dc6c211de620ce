"""Merchant settings stored in the database (edited in the admin), with defaults when none is saved."""

from __future__ import annotations

from typing import Any

from app.audit import record
from app.extensions import db
from app.models import Setting

DEFAULTS: dict[str, Any] = {
    # SKU / description rules -> product type: [{"sku": "SUB-*", "type": "subscription"}, ...]
    "product_rules": [
        {"sku": "SUB-*", "type": "subscription"},
        {"keyword": "subscription", "type": "subscription"},
        {"keyword": "membership", "type": "subscription"},
        {"keyword": "monthly plan", "type": "subscription"},
        {"sku": "DIG-*", "type": "digital"},
        {"keyword": "e-book", "type": "digital"},
        {"keyword": "download", "type": "digital"},
        {"sku": "SHIP-*", "type": "physical"},
    ],
    "default_product_type": "one_time",
    "value_bands": None,  # None = rules.product_types.DEFAULT_BANDS
    # 1 unit of each currency in the base currency; money in policies is compared through these
    "fx_rates": {
        "base": "USD",
        "rates": {
            "EUR": "1.08",
            "GBP": "1.27",
            "CAD": "0.73",
            "AUD": "0.66",
            "JPY": "0.0067",
            "MXN": "0.058",
            "BRL": "0.20",
            "INR": "0.012",
            "SAR": "0.27",
            "AED": "0.27",
            "SGD": "0.74",
            "NZD": "0.61",
            "SEK": "0.095",
            "ZAR": "0.054",
        },
    },
    "fetch_initial_lookback_days": 30,
    "fetch_overlap_seconds": 900,
    "fetch_page_size": 1000,
}


def get_setting(key: str) -> Any:
    row = db.session.get(Setting, key)
    return row.value if row is not None else DEFAULTS.get(key)


def set_setting(key: str, value: Any, *, actor: str) -> None:
    previous = get_setting(key)
    db.session.merge(Setting(key=key, value=value, updated_by=actor))
    record(actor, "setting.update", "setting", key, {"from": previous, "to": value})


# -- added for the admin panel ---------------------------------------------------------------------------------
#: four-eyes: a policy or message template version must be approved by someone other than its author (admins may
#: turn it off)
DEFAULTS.setdefault("policy_four_eyes", True)


def four_eyes_required() -> bool:
    return bool(get_setting("policy_four_eyes"))


#: contact windows by region ("*" = everywhere): business hours, quiet hours and blackout dates. Keys are "*",
#: a country ("US") or a country-region ("US-FL"); the most specific one wins, and a policy's own statements
#: override them (rules.contact_settings). The default is the timing core's shipped one (ContactRules.default():
#: quiet 21:00-08:00, no business-hours constraint), so that nothing changes until an admin says otherwise.
DEFAULTS.setdefault(
    "contact_windows",
    {
        "*": {"quiet_hours": "21:00-08:00", "blackout_dates": []},
    },
)

#: the settings the admin edits, in the order it shows them
EDITABLE = ("contact_windows", "value_bands", "product_rules", "default_product_type", "fx_rates", "policy_four_eyes")

#: what customers see of the merchant (app.messages.merchant); None = the config's value (MERCHANT_NAME, ...)
MERCHANT_KEYS = ("merchant_name", "merchant_logo_url", "merchant_brand_colour", "merchant_website_url",
                 "merchant_support_email")
DEFAULTS.update(dict.fromkeys(MERCHANT_KEYS))
EDITABLE = EDITABLE + MERCHANT_KEYS + ("message_costs",)
#: what one message costs the merchant, per channel, in one currency: {"currency": "USD", "prices": {"sms":
#: "0.0079", ...}}; the dashboard's cost and net recovered (None: not set, and the dashboard says so)
DEFAULTS.setdefault("message_costs", None)
#: how long before a payment a message or retry still earns the credit for it (hours; app.analytics.facts): with
#: none that recent, the recovery is counted as organic
EDITABLE = EDITABLE + ("attribution_window_hours",)
DEFAULTS.setdefault("attribution_window_hours", 72)
#: the longest attribution window: a month
MAX_ATTRIBUTION_HOURS = 720


class SettingRefused(ValueError):
    """The value cannot be used; the message says why in plain words, ``key`` which setting it was."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


_TIME_RANGE = r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-4]):[0-5]\d"
_DAYS = r"(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?"


def validate_setting(key: str, value: Any) -> Any:
    """The value as it will be stored, or SettingRefused saying what is wrong in plain words."""
    import re
    from datetime import date

    from rules.money import FxRates, MoneyError
    from rules.product_types import ProductTypeRules, RuleError, validate_bands

    if key not in EDITABLE:
        raise SettingRefused(f"{key!r} cannot be edited here")
    if key in MERCHANT_KEYS:
        from app.messages.merchant import MerchantSettingRefused, validate_merchant_setting

        try:
            return validate_merchant_setting(key, value)
        except MerchantSettingRefused as exc:
            raise SettingRefused(str(exc)) from None
    try:
        if key == "message_costs":
            return _message_costs(value)
        if key == "attribution_window_hours":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTRIBUTION_HOURS:
                raise SettingRefused(f"a whole number of hours from 1 to {MAX_ATTRIBUTION_HOURS}, such as 72")
            return value
        if key == "fx_rates":
            if not isinstance(value, dict):
                raise SettingRefused('write exchange rates as {"base": "USD", "rates": {"EUR": "1.08"}}')
            FxRates.from_mapping(value)
        elif key == "value_bands":
            if value is not None:
                if not isinstance(value, dict):
                    raise SettingRefused('write bands as {"USD": [["low", 0], ["high", 10000]]} (amounts in cents)')
                value = {cur: [[str(n), int(lo)] for n, lo in bands] for cur, bands in value.items()}
                validate_bands({cur: tuple((n, lo) for n, lo in b) for cur, b in value.items()})
        elif key == "product_rules":
            if not isinstance(value, list):
                raise SettingRefused('write rules as a list: [{"sku": "SUB-*", "type": "subscription"}]')
            ProductTypeRules.from_config(value)
        elif key == "default_product_type":
            if not isinstance(value, str) or not value.strip():
                raise SettingRefused("name a product type, e.g. one_time")
            value = value.strip()
        elif key == "policy_four_eyes":
            if not isinstance(value, bool):
                raise SettingRefused("true or false")
        elif key == "contact_windows":
            if not isinstance(value, dict) or not value:
                raise SettingRefused('write windows by region: {"*": {"quiet_hours": "21:00-08:00"}}')
            for region, rules in value.items():
                if not re.fullmatch(r"\*|[A-Z]{2}(-[A-Z0-9]{1,3})?", region):
                    raise SettingRefused(f'"{region}" is not a region: use "*", a country like "US" or "US-FL"')
                if not isinstance(rules, dict):
                    raise SettingRefused(
                        f'"{region}": write an object with business_hours, quiet_hours, blackout_dates'
                    )
                unknown = set(rules) - {"business_hours", "quiet_hours", "blackout_dates"}
                if unknown:
                    raise SettingRefused(f'"{region}": unknown entry {", ".join(sorted(unknown))}')
                hours = rules.get("business_hours")
                if hours is not None:
                    for part in str(hours).split(","):
                        if not re.fullmatch(rf"{_DAYS} {_TIME_RANGE}", part.strip()):
                            raise SettingRefused(
                                f'"{region}": business hours "{part.strip()}" should look like "mon-fri 09:00-18:00"'
                            )
                quiet = rules.get("quiet_hours")
                if quiet is not None and not re.fullmatch(_TIME_RANGE, str(quiet)):
                    raise SettingRefused(f'"{region}": quiet hours "{quiet}" should look like "21:00-08:00"')
                for day in rules.get("blackout_dates") or []:
                    try:
                        date.fromisoformat(str(day))
                    except ValueError:
                        raise SettingRefused(
                            f'"{region}": blackout date "{day}" should look like "2026-12-25"'
                        ) from None
            # and read exactly as the planner will read it (e.g. "24:30" passes the patterns above)
            from rules.contact_settings import ContactWindowsError, parse_contact_windows

            try:
                parse_contact_windows(value)
            except ContactWindowsError as exc:
                raise SettingRefused(str(exc)) from None
    except (RuleError, MoneyError, TypeError, ValueError) as exc:
        if isinstance(exc, SettingRefused):
            raise
        raise SettingRefused(str(exc)) from None
    return value


def save_setting(key: str, value: Any, *, actor: str) -> Any:
    """Validate, store and audit one setting (the admin's way in)."""
    value = validate_setting(key, value)
    set_setting(key, value, actor=actor)
    db.session.commit()
    return value


def save_settings(values: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Validate every one of ``values`` first, then store and audit those that changed, in one commit: a form that
    writes several settings is saved whole or not at all. SettingRefused names the setting that was refused."""
    checked = {}
    for key, value in values.items():
        try:
            checked[key] = validate_setting(key, value)
        except SettingRefused as exc:
            raise SettingRefused(str(exc), key) from None
    for key, value in checked.items():
        if value != get_setting(key):
            set_setting(key, value, actor=actor)
    db.session.commit()
    return checked


def _message_costs(value: Any) -> dict[str, Any] | None:
    from decimal import Decimal, InvalidOperation

    from rules.money import is_currency
    from rules.vocabulary import CHANNELS

    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("prices"), dict):
        raise SettingRefused('write costs as {"currency": "USD", "prices": {"sms": "0.0079"}}')
    currency = str(value.get("currency") or "").upper()
    if not is_currency(currency):
        raise SettingRefused(f"“{currency}” is not a currency code (ISO 4217, such as USD)")
    prices = {}
    for channel, price in value["prices"].items():
        if channel not in CHANNELS:
            raise SettingRefused(f"“{channel}” is not a channel ({', '.join(CHANNELS)})")
        try:
            amount = Decimal(str(price))
            if not amount.is_finite() or amount < 0:
                raise InvalidOperation
        except InvalidOperation:
            raise SettingRefused(f"{channel}: “{price}” is not a price (a number such as 0.0079)") from None
        prices[channel] = format(amount, "f")
    return {"currency": currency, "prices": prices}
