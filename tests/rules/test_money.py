from __future__ import annotations

from decimal import Decimal

import pytest

from rules.money import FxRates, MissingRateError, Money, MoneyError, convert, currency_exponent


def test_minor_units_follow_the_currency_exponent() -> None:
    assert currency_exponent("USD") == 2 and currency_exponent("JPY") == 0 and currency_exponent("BHD") == 3
    assert Money.of("249.00", "USD").to_minor() == 24900
    assert Money.of("1200", "JPY").to_minor() == 1200
    assert Money.of("1.234", "BHD").to_minor() == 1234
    assert Money.from_minor(24900, "USD") == Money(Decimal("249.00"), "USD")
    assert Money.from_minor(5, "JPY").amount == Decimal(5)


def test_rounding_is_half_even_at_the_currency_precision() -> None:
    assert Money.of("0.125", "USD").to_minor() == 12
    assert Money.of("0.135", "USD").to_minor() == 14
    assert Money.of("10.005", "USD").rounded() == Money(Decimal("10.00"), "USD")


def test_money_is_never_a_float() -> None:
    with pytest.raises(MoneyError):
        Money.of(1.5, "USD")
    with pytest.raises(MoneyError):
        Money.of("abc", "USD")
    with pytest.raises(MoneyError):
        Money.of("NaN", "USD")
    with pytest.raises(MoneyError):
        Money.of("1", "XXQ")


def test_arithmetic_and_comparison_need_the_same_currency() -> None:
    a, b = Money.of("10.00", "USD"), Money.of("2.50", "USD")
    assert a + b == Money.of("12.50", "USD") and a - b == Money.of("7.50", "USD")
    assert b < a and a >= b
    with pytest.raises(MoneyError):
        _ = a < Money.of("1", "EUR")


def test_conversion_goes_through_the_base_currency() -> None:
    rates = FxRates("USD", {"EUR": Decimal("1.10"), "GBP": Decimal("1.25")})
    assert convert(Money.of("100", "EUR"), "USD", rates) == Money.of("110", "USD")
    assert convert(Money.of("110", "USD"), "EUR", rates) == Money.of("100", "EUR")
    assert convert(Money.of("125", "GBP"), "EUR", rates).rounded() == Money.of("142.05", "EUR")
    assert convert(Money.of("5", "USD"), "USD", None) == Money.of("5", "USD")


def test_a_missing_rate_is_a_typed_error() -> None:
    rates = FxRates("USD", {"EUR": Decimal("1.10")})
    with pytest.raises(MissingRateError) as caught:
        convert(Money.of("1", "JPY"), "USD", rates)
    assert (caught.value.source, caught.value.target) == ("JPY", "USD")
    with pytest.raises(MissingRateError):
        convert(Money.of("1", "EUR"), "USD", None)


def test_rates_from_settings() -> None:
    rates = FxRates.from_mapping({"base": "USD", "rates": {"EUR": "1.08"}})
    assert rates.rate("EUR") == Decimal("1.08") and rates.currencies() == {"USD", "EUR"}
    with pytest.raises(MoneyError):
        FxRates.from_mapping({"rates": {"EUR": "1.08"}})
    with pytest.raises(MoneyError):
        FxRates.from_mapping({"base": "USD", "rates": {"EUR": "-1"}})
