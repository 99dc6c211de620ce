import pytest

from rules.product_types import (
    DEFAULT_BANDS,
    ProductLine,
    ProductRule,
    ProductTypeRules,
    RuleError,
    product_type,
    validate_bands,
    value_band,
)

CONFIG = [
    {"sku": "SUB-*", "type": "subscription"},
    {"keyword": "membership", "type": "subscription"},
    {"keyword": "e-book", "type": "digital"},
    {"sku": "TSHIRT-??", "type": "physical"},
]


@pytest.fixture
def rules():
    return ProductTypeRules.from_config(CONFIG, default="one_time")


def test_sku_glob_matches_case_insensitively(rules):
    assert rules.classify([ProductLine(sku="sub-gold-m")]) == "subscription"
    assert rules.classify([ProductLine(sku="TSHIRT-XL")]) == "physical"
    assert rules.classify([ProductLine(sku="TSHIRT-XXL")]) == "one_time"


def test_keyword_matches_whole_words_in_line_or_order_description(rules):
    assert rules.classify([ProductLine(description="Gold MEMBERSHIP, monthly")]) == "subscription"
    assert rules.classify([], order_description="Your e-book bundle") == "digital"
    assert rules.classify([], order_description="memberships") == "one_time"


def test_first_rule_wins_over_later_rules(rules):
    lines = [ProductLine(sku="TSHIRT-XL"), ProductLine(description="e-book")]
    # digital (rule 3) comes before physical (rule 4), whichever line matched
    assert rules.classify(lines) == "digital"


def test_default_when_nothing_matches(rules):
    assert rules.classify([ProductLine(sku="X", description="Thing")], "misc") == "one_time"
    assert ProductTypeRules().classify() == "one_time"


def test_convenience_function(rules):
    assert product_type(rules, skus=["SUB-1"]) == "subscription"
    assert product_type(rules, descriptions=[None, "membership"]) == "subscription"


@pytest.mark.parametrize(
    "bad",
    [
        [{"type": "digital"}],
        [{"sku": "A*"}],
        [{"sku": "A*", "type": "x", "colour": "red"}],
        ["not an object"],
        [{"sku": 3, "type": "x"}],
        [{"sku": "A", "type": "  "}],
    ],
)
def test_bad_config_is_refused_with_the_rule_number(bad):
    with pytest.raises(RuleError, match="rule 1"):
        ProductTypeRules.from_config(bad)


def test_rule_needs_a_matcher():
    with pytest.raises(RuleError):
        ProductRule("digital")


@pytest.mark.parametrize(
    ("amount", "band"),
    [(0, "low"), (1_999, "low"), (2_000, "medium"), (9_999, "medium"), (10_000, "high"), (50_000, "premium"),
     (10**9, "premium"), (-500, "low")],
)  # fmt: skip
def test_default_usd_bands(amount, band):
    assert value_band(amount, "USD") == band


def test_bands_are_per_currency_with_a_fallback():
    bands = {"USD": [("small", 0), ("big", 100)], "*": [("any", 0)]}
    assert value_band(150, "usd", bands) == "big"
    assert value_band(150, "EUR", bands) == "any"
    with pytest.raises(RuleError):
        value_band(1, "EUR", {"USD": [("a", 0)]})


def test_amount_must_be_integer_minor_units():
    with pytest.raises(TypeError):
        value_band(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        value_band(True, "USD")


def test_default_bands_are_valid_and_bad_bands_are_refused():
    validate_bands(DEFAULT_BANDS)
    for bad in (
        {"USD": []},
        {"USD": [("a", 5)]},
        {"USD": [("a", 0), ("b", 0)]},
        {"USD": [("a", 0), ("b", 1.5)]},
    ):
        with pytest.raises(RuleError):
            validate_bands(bad)
