"""Money shown to people: integer minor units formatted with Babel in a locale."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-get_currency_precision(currency))


def format_minor(amount_minor: int | None, currency: str | None, locale: str = "en_US") -> str:
    if amount_minor is None or not currency:
        return ""
    return format_currency(minor_to_decimal(amount_minor, currency), currency, locale=locale or "en_US")
