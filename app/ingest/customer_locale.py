"""A customer's locale: guessed from their country until an operator sets it by hand, and followed by their messages.

``Customer.locale_source`` says where the locale came from: ``guessed`` (from the country, re-guessed whenever
the gateway reports another country) or ``manual`` (an operator chose it; nothing overrides that). Rows from before
the source was stored keep their locale until their country changes. When a customer's locale changes, their
messages still waiting to be sent change with it, so the next reminder speaks the new language.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError

from app.extensions import db
from app.models import Customer, OutboxMessage
from app.outbox.states import OutboxState

DEFAULT_LOCALE = "en_US"
#: countries whose customers we write to in English although their first official language is another
ENGLISH_FIRST = frozenset({"US", "GB", "CA", "AU", "IN", "IE", "NZ", "ZA", "SG", "PH", "NG", "KE"})


class LocaleSource(StrEnum):
    GUESSED = "guessed"
    MANUAL = "manual"


class LocaleRefused(ValueError):
    """Not a locale we can write in; the message says what was typed and what would do."""


@lru_cache(maxsize=1024)
def guess_locale(country: str | None) -> str:
    """The locale a customer in ``country`` most likely reads: ``guess_locale("MX") == "es_MX"``."""
    if not country:
        return DEFAULT_LOCALE
    country = country.upper()
    try:
        if country in ENGLISH_FIRST:
            language = "en"
        else:
            from babel.languages import get_official_languages

            official = get_official_languages(country, de_facto=True)
            language = official[0] if official else "en"
        return str(Locale.parse(f"{language}_{country}"))
    except (UnknownLocaleError, ValueError):
        return DEFAULT_LOCALE


def parse_locale(text: str) -> str:
    """``"es-mx"`` -> ``"es_MX"``; :class:`LocaleRefused` for anything Babel does not know."""
    cleaned = (text or "").strip().replace("-", "_")
    try:
        return str(Locale.parse(cleaned))
    except (UnknownLocaleError, ValueError, TypeError):
        raise LocaleRefused(f"“{text}” is not a language we know: write one such as en_US, es_ES or es_MX") from None


def follow_country(customer: Customer) -> None:
    """Re-guess a guessed locale from the customer's (possibly new) country; a locale set by hand stays."""
    guessed = followed_locale(
        customer.locale, customer.locale_source, customer.country, country_changed=_country_changed(customer)
    )
    if guessed is not None:
        _apply(customer, guessed, LocaleSource.GUESSED)


def followed_locale(
    locale: str | None, source: str | None, country: str | None, *, country_changed: bool
) -> str | None:
    """The guessed locale a customer's (possibly new) ``country`` calls for, or None when their ``locale`` stays.

    Ingest calls it each time a customer is upserted (then :func:`carry_to_waiting_messages` if it changed)."""
    if source == LocaleSource.MANUAL and locale:
        return None
    if source is None and locale and not country_changed:
        return None  # stored before the source was: maybe chosen by hand, so it stays until the country changes
    return guess_locale(country)


def _country_changed(customer: Customer) -> bool:
    history = sa.inspect(customer).attrs.country.history
    return bool(history.deleted) and history.deleted[0] != customer.country


def set_by_hand(customer: Customer, locale: str | None) -> None:
    """An operator's choice: kept whatever country the gateway reports later. Empty = go back to guessing."""
    if locale is None or not locale.strip():
        _apply(customer, guess_locale(customer.country), LocaleSource.GUESSED)
        return
    _apply(customer, parse_locale(locale), LocaleSource.MANUAL)


def edited_by_hand(customer: Customer) -> None:
    """For an admin form that has just written ``customer.locale``: mark it as set by hand if it changed."""
    history = sa.inspect(customer).attrs.locale.history
    if not history.has_changes():
        return
    before = history.deleted[0] if history.deleted else None
    typed = customer.locale
    customer.locale = before  # so that _apply sees the change and carries it to the waiting messages
    set_by_hand(customer, typed)


def _apply(customer: Customer, locale: str, source: LocaleSource) -> None:
    changed = customer.locale != locale
    customer.locale = locale
    customer.locale_source = source.value
    if changed and customer.id is not None:
        carry_to_waiting_messages(customer.id, locale)


def carry_to_waiting_messages(customer_id: int, locale: str) -> None:
    """The customer's messages still waiting to be sent are written in their new locale; sent ones keep theirs."""
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.customer_id == customer_id, OutboxMessage.state == OutboxState.SCHEDULED)
        .values(locale=locale)
        .execution_options(synchronize_session=False)
    )
