"""Who the customer is dealing with: the merchant's name, logo, brand colour, website and support email.

Edited in the admin's settings (keys in :data:`SETTING_KEYS`); a setting left empty falls back to the config
(``MERCHANT_NAME``, ``MERCHANT_LOGO_URL``, ``MERCHANT_BRAND_COLOUR``, ``MERCHANT_WEBSITE_URL``,
``MERCHANT_SUPPORT_EMAIL``). Messages, the payment page and the receipt all read :func:`merchant_profile`.
It is read once per few seconds per process (the dispatcher renders thousands of messages), and at once again
in the process that saved a change.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context

from app.extensions import db
from app.messages.colours import COLOUR, DEFAULT_COLOUR, ink_on_white, normal_colour, text_on
from app.models import Setting

#: setting key -> the config key it falls back to
SETTING_KEYS: dict[str, str] = {
    "merchant_name": "MERCHANT_NAME",
    "merchant_logo_url": "MERCHANT_LOGO_URL",
    "merchant_brand_colour": "MERCHANT_BRAND_COLOUR",
    "merchant_website_url": "MERCHANT_WEBSITE_URL",
    "merchant_support_email": "MERCHANT_SUPPORT_EMAIL",
}
DEFAULT_NAME = "Recoup Demo Store"
CACHE_SECONDS = 5.0
_CACHE_KEY = "recoup.merchant"
_URL = re.compile(r"https?://[^\s\"'<>`]+", re.I)
_EMAIL = re.compile(r"[^@\s\"'<>,;]+@[^@\s\"'<>,;]+\.[^@\s\"'<>,;]+")


class MerchantSettingRefused(ValueError):
    """The value cannot be used; the message says what is expected."""


@dataclass(frozen=True)
class Merchant:
    name: str
    brand_colour: str = DEFAULT_COLOUR  # #rrggbb
    logo_url: str | None = None
    website_url: str | None = None
    support_email: str | None = None

    @property
    def text_on_brand(self) -> str:
        return text_on(self.brand_colour)

    @property
    def brand_ink(self) -> str:
        return ink_on_white(self.brand_colour)

    def template_fields(self) -> dict[str, str]:
        """What message templates see as ``merchant``."""
        return {"name": self.name, "logo_url": self.logo_url or "", "brand_colour": self.brand_colour,
                "website": self.website_url or "", "support_email": self.support_email or "", "support_phone": ""}


# -- reading -------------------------------------------------------------------------------------------------------
def merchant_profile() -> Merchant:
    """The merchant as customers should see it (settings over config)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get(_CACHE_KEY)
    now = time.monotonic()
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]  # type: ignore[no-any-return]
    stored = {row.key: row.value for row in db.session.scalars(
        sa.select(Setting).where(Setting.key.in_(tuple(SETTING_KEYS))))}
    profile = profile_from(stored, app.config)
    app.extensions[_CACHE_KEY] = (now, profile)
    return profile


def profile_from(stored: dict[str, Any], config: Any) -> Merchant:
    def value(key: str) -> str | None:
        text = stored.get(key)
        if not (isinstance(text, str) and text.strip()):
            text = config.get(SETTING_KEYS[key])
        return text.strip() if isinstance(text, str) and text.strip() else None

    return Merchant(
        name=value("merchant_name") or DEFAULT_NAME,
        brand_colour=normal_colour(value("merchant_brand_colour")),
        logo_url=_safe_url(value("merchant_logo_url")),
        website_url=_safe_url(value("merchant_website_url")),
        support_email=value("merchant_support_email"),
    )


def forget_profile(*_: Any) -> None:
    if has_app_context():
        current_app.extensions.pop(_CACHE_KEY, None)


for _event in ("after_insert", "after_update", "after_delete"):
    sa.event.listen(Setting, _event, forget_profile)


# -- validating (the settings page) ------------------------------------------------------------------------------------
def validate_merchant_setting(key: str, value: Any) -> str | None:
    """The value to store (None = use the config's), or :class:`MerchantSettingRefused`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise MerchantSettingRefused("write it as text")
    text = value.strip()
    if key == "merchant_name":
        if len(text) > 100 or "\n" in text:
            raise MerchantSettingRefused("a name of one line, at most 100 characters")
        return text
    if key == "merchant_brand_colour":
        if not COLOUR.fullmatch(text):
            raise MerchantSettingRefused(f"“{text}” is not a colour: write it as #1d4ed8 or #17c")
        return normal_colour(text)
    if key in ("merchant_logo_url", "merchant_website_url"):
        if len(text) > 500 or not _URL.fullmatch(text):
            raise MerchantSettingRefused(f"“{text}” is not a web address: write it as https://example.com/…")
        return text
    if key == "merchant_support_email":
        if len(text) > 254 or not _EMAIL.fullmatch(text):
            raise MerchantSettingRefused(f"“{text}” is not an email address")
        return text
    raise MerchantSettingRefused(f"{key!r} is not a merchant setting")


def _safe_url(text: str | None) -> str | None:
    return text if text and _URL.fullmatch(text) else None
