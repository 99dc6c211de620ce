"""Money in the decision core: a Decimal amount and an ISO 4217 currency, never a float; conversion through given
rates.

A compiled policy compares (amount, currency) pairs as it reads them from the facts, and value bands cut integer
minor units (``rules.product_types``), so there is no money object here: the application keeps money as integer
minor units plus a currency (``app.payments.money`` shows it to people). Minor units follow each currency's own exponent
(2 for USD, 0 for JPY, 3 for BHD), from Babel's CLDR data.

Exchange rates are data handed in by the caller (settings), never fetched here; a missing rate raises
``MissingRateError``, which a compiled policy turns into "this condition is false".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies


class MoneyError(ValueError):
    """Not a valid amount of money (bad number, unknown currency, mixed currencies)."""


class MissingRateError(MoneyError):
    """No exchange rate is configured between two currencies."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"no exchange rate from {source} to {target}")
        self.source = source
        self.target = target


@lru_cache(maxsize=512)
def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency``'s minor unit (USD 2, JPY 0, BHD 3)."""
    if not is_currency(currency):
        raise MoneyError(f"unknown currency {currency!r}")
    return int(get_currency_precision(currency))


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def is_currency(code: str) -> bool:
    return code in _known_currencies()


def to_decimal(value: object) -> Decimal:
    """A Decimal from a decimal string or an int (a float is refused: its binary value is not the amount)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"amounts are decimal strings, not {type(value).__name__}: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise MoneyError(f"not an amount: {value!r}") from None
    else:
        raise MoneyError(f"not an amount: {value!r}")
    if not result.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    return result


@dataclass(frozen=True)
class FxRates:
    """Rates against one base currency: ``rates["EUR"] = Decimal("1.08")`` means 1 EUR = 1.08 base."""

    base: str
    rates: Mapping[str, Decimal] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> FxRates:
        """From JSON-like settings: ``{"base": "USD", "rates": {"EUR": "1.08"}}``."""
        base = data.get("base")
        raw = data.get("rates") or {}
        if not isinstance(base, str) or not is_currency(base):
            raise MoneyError('exchange rates need a base currency, like "base": "USD"')
        if not isinstance(raw, Mapping):
            raise MoneyError("exchange rates are a mapping of currency code to rate")
        rates = {str(code): to_decimal(value) for code, value in raw.items()}
        for code, value in rates.items():
            if not is_currency(code) or value <= 0:
                raise MoneyError(f"bad exchange rate for {code!r}: {value}")
        return cls(base, rates)

    def currencies(self) -> frozenset[str]:
        return frozenset(self.rates) | {self.base}

    def rate(self, currency: str) -> Decimal:
        """How many base units one unit of ``currency`` is worth."""
        if currency == self.base:
            return Decimal(1)
        try:
            return self.rates[currency]
        except KeyError:
            raise MissingRateError(currency, self.base) from None

    def __hash__(self) -> int:
        return hash((self.base, tuple(sorted(self.rates.items()))))


def convert_amount(amount: Decimal, source: str, target: str, rates: FxRates | None) -> Decimal:
    """``amount`` in ``source`` expressed in ``target`` (unrounded). Raises MissingRateError."""
    if source == target:
        return amount
    if rates is None:
        raise MissingRateError(source, target)
    try:
        return amount * rates.rate(source) / rates.rate(target)
    except MissingRateError:
        raise MissingRateError(source, target) from None
