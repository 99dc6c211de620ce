from __future__ import annotations

from decimal import Decimal

import pytest

from rules.money import (
    FxRates,
    MissingRateError,
    MoneyError,
    convert_amount,
    currency_exponent,
    is_currency,
    to_decimal,
)


def test_minor_units_follow_the_currency_exponent() -> None:
    assert currency_exponent("USD") == 2 and currency_exponent("JPY") == 0 and currency_exponent("BHD") == 3
    assert is_currency("EUR") and not is_currency("XXQ")
    with pytest.raises(MoneyError, match="unknown currency 'XXQ'"):
        currency_exponent("XXQ")


def test_money_is_never_a_float() -> None:
    assert to_decimal("249.00") == Decimal("249.00") and to_decimal(5) == Decimal(5)
    assert to_decimal(Decimal("1.5")) == Decimal("1.5")
    for bad in (1.5, True, "abc", "NaN", "Infinity", None, [1]):
        with pytest.raises(MoneyError):
            to_decimal(bad)


def test_conversion_goes_through_the_base_currency() -> None:
    rates = FxRates("USD", {"EUR": Decimal("1.10"), "GBP": Decimal("1.25")})
    assert convert_amount(Decimal("100"), "EUR", "USD", rates) == Decimal("110")
    assert convert_amount(Decimal("110"), "USD", "EUR", rates) == Decimal("100")
    assert convert_amount(Decimal("125"), "GBP", "EUR", rates).quantize(Decimal("0.01")) == Decimal("142.05")
    assert convert_amount(Decimal("5"), "USD", "USD", None) == Decimal("5")


def test_a_missing_rate_is_a_typed_error() -> None:
    rates = FxRates("USD", {"EUR": Decimal("1.10")})
    with pytest.raises(MissingRateError) as caught:
        convert_amount(Decimal("1"), "JPY", "USD", rates)
    assert (caught.value.source, caught.value.target) == ("JPY", "USD")
    with pytest.raises(MissingRateError):
        convert_amount(Decimal("1"), "EUR", "USD", None)


def test_rates_from_settings() -> None:
    rates = FxRates.from_mapping({"base": "USD", "rates": {"EUR": "1.08"}})
    assert rates.rate("EUR") == Decimal("1.08") and rates.currencies() == {"USD", "EUR"}
    with pytest.raises(MoneyError):
        FxRates.from_mapping({"rates": {"EUR": "1.08"}})
    with pytest.raises(MoneyError):
        FxRates.from_mapping({"base": "USD", "rates": {"EUR": "-1"}})
    with pytest.raises(MoneyError):
        FxRates.from_mapping({"base": "USD", "rates": {"EUR": 1.08}})  # a float rate is refused too
