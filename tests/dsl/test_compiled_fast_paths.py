"""The shortcuts of the compiled ``decide`` give exactly the answers of the plain reading of the policy.

``decide`` compares money with constants through a float filter and returns prebuilt Decisions; ``explain`` is
generated the plain way (Decimal money, every fact read). So: money comparisons are checked against a Decimal
oracle written here, and whole decisions against the ones assembled from ``explain``, on random and
adversarial facts.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import CompiledPolicy, Decision, compile_policy, parse
from dsl import nodes as n
from dsl.compiler import _float_bounds
from rules.money import FxRates, MoneyError, convert_amount
from rules.policy import CompiledOffer
from tests.dsl.helpers import EXAMPLES, RATES, TEMPLATES, valid_policies

SETTINGS = settings(
    max_examples=int(os.environ.get("DSL_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# exact as a float, between two floats, tiny, past float precision
THRESHOLDS = ["0", "500", "499.99", "0.1", "5000.005", "123456789012345678.9", "0.000000000000000000001"]
PLAN = '  plan otherwise\n    step after 1d via email template "x"\n  end\n'


@cache
def amount_policy(op: str, threshold: str, currency: str, rates: FxRates | None) -> CompiledPolicy:
    condition = f"transaction.amount {op} {threshold} {currency}"
    return compile_policy(f'policy "t"\n  segment yes when {condition}\n{PLAN}end\n', fx_rates=rates)


def oracle(amount: object, currency: object, op: str, target: Decimal, to: str, rates: FxRates | None) -> bool:
    """The comparison as the language defines it: a decimal text, an int or a finite Decimal; never a float."""
    if type(amount) is str:
        try:
            value = Decimal(amount)
        except InvalidOperation:
            return False
    elif isinstance(amount, int | Decimal) and not isinstance(amount, bool):
        value = Decimal(amount)
    else:
        return False
    if not value.is_finite() or type(currency) is not str:
        return False
    try:
        value = convert_amount(value, currency, to, rates)
    except MoneyError:
        return False
    return OPS[op](value, target)


def check_amount(amount: object, currency: object = "USD", rates: FxRates | None = None) -> None:
    facts = {"transaction": {"amount": amount, "currency": currency}}
    for op, threshold in itertools.product(OPS, THRESHOLDS):
        for to in ("USD", "EUR"):
            policy = amount_policy(op, threshold, to, rates)
            got = policy.decide(facts).segment == "yes"
            expected = oracle(amount, currency, op, Decimal(threshold), to, rates)
            assert got is expected, (amount, currency, op, threshold, to)
            assert policy.explain(facts)[0].value is expected


ADVERSARIAL: list[object] = [
    "499.99999999999999999999",
    "499.990000000000000000001",
    "499.98999999999999999999",
    "500.000000000000000000001",
    "5e2",
    "5E+2",
    "0.5e3",
    " 500",
    "500 ",
    "\t500\n",
    "500.00",
    "0500",
    "+500",
    "-500",
    "NaN",
    "nan",
    "-nan",
    "sNaN",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "-0",
    "0",
    "-0.0",
    "0e5",
    "1_000",
    "1__000",
    "_1000",
    "1000_",
    "500_.0",
    "",
    " ",
    ".",
    "e5",
    "5e",
    "0x1f4",
    "1" * 400,
    "0." + "0" * 400 + "1",
    "9" * 30 + "." + "9" * 30,
    "５００",  # fullwidth digits
    "\u0665\u0660\u0660",  # Arabic-Indic digits
    "\u00a0500",
    "500\u2003",
    "123456789012345678.9",
    "123456789012345678.899999",
    "123456789012345678.900001",
    "5000.005",
    "5000.00499999999999999",
    "0.1",
    "0.10000000000000000555",
    "0.1000000000000000055511151231257827",
    "0.000000000000000000001",
    "1E-21",
    500,
    499,
    0,
    -1,
    10**400,
    True,
    False,
    None,
    500.0,
    499.99,
    float("inf"),
    float("nan"),
    Decimal("500"),
    Decimal("499.99"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-0"),
    b"500",
    ["500"],
    {"amount": "500"},
]


class Text(str):
    """A str subclass: not a decimal text as far as facts go."""


class Number(int):
    pass


@pytest.mark.parametrize("amount", ADVERSARIAL, ids=repr)
def test_adversarial_amounts_compare_exactly(amount: object) -> None:
    check_amount(amount)
    check_amount(amount, rates=RATES)


@pytest.mark.parametrize("currency", ["EUR", "CAD", "GBP", "usd", "", None, 7, Text("USD")])
@pytest.mark.parametrize("amount", ["500", "499.99", "1e3", "0.1", 500, Decimal("499.99")])
def test_other_currencies_go_the_exact_way(amount: object, currency: object) -> None:
    check_amount(amount, currency)
    check_amount(amount, currency, rates=RATES)


def test_str_and_int_subclasses_keep_their_meaning() -> None:
    check_amount(Text("500"))
    check_amount(Number(500))


decimal_texts = st.builds(
    lambda ws1, sign, whole, dot, frac, exp, ws2: f"{ws1}{sign}{whole}{dot}{frac}{exp}{ws2}",
    st.sampled_from(["", " ", "\t", "\u00a0"]),
    st.sampled_from(["", "+", "-"]),
    st.from_regex(r"[0-9_]{0,25}", fullmatch=True),
    st.sampled_from(["", ".", "."]),
    st.from_regex(r"[0-9_]{0,25}", fullmatch=True),
    st.sampled_from(["", "", "e2", "E-3", "e+0", "e400", "e-400", "e", "e_1"]),
    st.sampled_from(["", " ", "\n"]),
)
near_thresholds = st.builds(
    lambda base, tail: base + tail,
    st.sampled_from(["499.99", "500", "5000.005", "0.1", "123456789012345678.9", "0.000000000000000000001"]),
    st.from_regex(r"(|0{1,30}[0-9]?|9{1,30}[0-9]?)", fullmatch=True),
)
amounts = st.one_of(
    decimal_texts,
    near_thresholds,
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.text(alphabet="0123456789.eE+-_ infatyINFATY\t\u00a0\u0661", max_size=12),
    st.text(max_size=8),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
)


@SETTINGS
@given(amounts, st.sampled_from(["USD", "USD", "EUR", "GBP", None]), st.booleans())
def test_random_amounts_compare_exactly(amount: object, currency: object, with_rates: bool) -> None:
    check_amount(amount, currency, RATES if with_rates else None)


def _premise(text: str) -> None:
    """What the filter relies on: a text that ``float`` reads as a finite number is a decimal text that
    ``Decimal`` reads too, and the float is that Decimal correctly rounded."""
    try:
        f = float(text)
    except ValueError:
        return
    if not math.isfinite(f):
        return
    exact = Decimal(text)
    assert exact.is_finite() and float(exact) == f, text


def test_float_reads_no_ascii_text_that_decimal_does_not() -> None:
    ascii_chars = [chr(i) for i in range(128)]
    for length in (1, 2):
        for chars in itertools.product(ascii_chars, repeat=length):
            _premise("".join(chars))
    alphabet = "05.eE+-_ \t\n\x0b\x0c\r\x1cinfaINFA"
    for length in (3, 4):
        for chars in itertools.product(alphabet, repeat=length):
            _premise("".join(chars))


@SETTINGS
@given(st.one_of(decimal_texts, near_thresholds, st.text(max_size=20)))
def test_float_reads_decimal_texts_as_rounded_decimals(text: str) -> None:
    _premise(text)


@SETTINGS
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_float_bounds_bracket_the_threshold(target: Decimal) -> None:
    low, high = _float_bounds(target)
    if math.isinf(high) or math.isinf(low):
        assert abs(target) > Decimal(1.7976931348623157e308)
        return
    assert Decimal(low) <= target <= Decimal(high)
    assert low == high or math.nextafter(low, math.inf) == high


# --- whole decisions: decide against the decision assembled from explain -----------------------------------

SYNTHETIC = """policy "synthetic"
  segment a when transaction.amount between 10 EUR and 300 USD
  segment b when transaction.amount > customer.lifetime_value or 100 USD < transaction.amount
  segment c when transaction.amount not in [100 USD, 100.00 EUR] and customer.lifetime_value != 0.1 USD
  segment d when customer.successful_payments == 0 or decline.reason == "expired_card"
  segment e when customer.country != "US" and customer.successful_payments != 3
  override when transaction.amount >= 1 USD: ignore business hours
  override when transaction.amount >= 10 USD: ignore weekends
  override when transaction.amount >= 100 USD: ignore business hours
  override when transaction.amount >= 1000 USD: ignore weekends
  override when customer.vip: ignore business hours
  override when customer.lifetime_value > 5 EUR: ignore weekends
  override when decline.kind == "hard": ignore business hours
  override when customer.successful_payments >= 2: ignore weekends
  offers
    when decline.kind == "hard" offer update_card
    when transaction.amount <= 50 USD offer pay_later 7d
  end
  plan for a, c
    step after 1h via email template "payment_failed" when transaction.amount < 20 USD
    step after 1d via sms template "reminder_short" when customer.lifetime_value >= 7 USD
    step after 2d via sms template "final_notice"
  end
  plan otherwise
    step after 2h via email template "payment_failed"
  end
end
"""
POLICIES = [p.read_text(encoding="utf-8") for p in valid_policies()] + [SYNTHETIC]


def reference_decision(text: str, policy: CompiledPolicy, facts: dict[str, Any]) -> Decision:
    holds = {(r.kind, r.line): r.value for r in policy.explain(facts) if r.kind != "part"}
    tree = parse(text)
    segments = [s for s in tree.statements if isinstance(s, n.Segment)]
    rules = [r for s in tree.statements if isinstance(s, n.Offers) for r in s.rules]
    overrides = [s for s in tree.statements if isinstance(s, n.Override)]
    index = next((k for k, s in enumerate(segments) if s.condition is None or holds["segment", s.line]), -1)
    plan = policy.plan_for(index)
    rule = next((r for r in rules if r.condition is None or holds["offer", r.line]), None)
    offers = () if rule is None else tuple(CompiledOffer(o.name, o.term.iso() if o.term else None) for o in rule.offers)
    steps = tuple(s for s in plan.steps if s.condition is None or holds["step", s.line]) if plan else ()
    ignores = frozenset(i.text for o in overrides if holds["override", o.line] for i in o.ignores)
    return Decision(segments[index].name.text if index >= 0 else None, plan, offers, steps, ignores)


@cache
def compiled(index: int, with_rates: bool) -> CompiledPolicy:
    return compile_policy(POLICIES[index], known_templates=TEMPLATES, fx_rates=RATES if with_rates else None)


junk = st.sampled_from([None, True, 1.5, "x", [], {}, Decimal("NaN")])
money = st.one_of(amounts, st.sampled_from(["0.1", "0.10", "7", "6.99", "10", "20", "50.00", "100", "300.00"]))
texts = st.one_of(st.sampled_from(["US", "CA", "EUR", "hard", "soft", "expired_card", "insufficient_funds"]), junk)


def _group(**fields: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.sampled_from([None, [], "customer"]),
    )


facts_strategy = st.fixed_dictionaries(
    {},
    optional={
        "now": st.sampled_from(["2026-11-27T01:30:00Z", "2026-11-29T23:30:00+00:00", "yesterday", 5]),
        "customer": _group(
            country=texts,
            successful_payments=st.one_of(st.integers(-2, 4), st.sampled_from(["3", "0", "x", 3.0]), junk),
            lifetime_value=money,
            currency=st.sampled_from(["USD", "EUR", "", None, 7]),
            tags=st.one_of(st.lists(st.sampled_from(["vip", "key_account", "x", 5]), max_size=3), junk),
            vip=st.one_of(st.booleans(), junk),
            opted_out=st.one_of(st.lists(st.sampled_from(["email", "sms", "whatsapp"]), max_size=3), junk),
            timezone=st.sampled_from(["America/New_York", "Nowhere/City", "", None]),
        ),
        "transaction": _group(
            amount=money,
            currency=st.sampled_from(["USD", "USD", "EUR", "CHF", "CAD", "GBP", None, 7]),
            failed_at=st.sampled_from(["2026-11-27T01:25:00Z", "2026-11-29T22:30:00-05:00", "x", None]),
        ),
        "decline": _group(kind=texts, reason=texts),
        "history": _group(
            messages_sent=st.one_of(st.integers(0, 5), junk),
            retries_last_30_days=st.one_of(st.integers(0, 9), junk),
            since_last_payment=st.sampled_from(["P3D", "P40D", "PT4H", 86400, "P1M", None]),
        ),
        "predicted": _group(recovery_likelihood=st.sampled_from(["0.45", "0.2", 1, 0, "x", None])),
    },
)


@SETTINGS
@given(facts_strategy, st.integers(0, len(POLICIES) - 1), st.booleans())
def test_decide_agrees_with_the_plain_reading(facts: dict[str, Any], index: int, with_rates: bool) -> None:
    policy = compiled(index, with_rates)
    assert policy.decide(facts) == reference_decision(POLICIES[index], policy, facts)


def test_a_policy_with_more_decisions_than_the_table_builds_them_as_met() -> None:
    policy = compile_policy(SYNTHETIC, known_templates=TEMPLATES)
    assert "_decision(i)" in policy.python_source  # 6 x 3 x 2**2 x 2**8 > 4096
    facts = {"transaction": {"amount": "15", "currency": "USD"}, "customer": {"lifetime_value": "9"}}
    assert policy.decide(facts) == reference_decision(SYNTHETIC, policy, facts)


def test_decisions_are_built_once_and_shared() -> None:
    policy = compile_policy((EXAMPLES / "standard.policy").read_text(), known_templates=TEMPLATES)
    facts = {"transaction": {"amount": "900.00", "currency": "USD"}, "decline": {"kind": "soft"}}
    first, second = policy.decide(facts), policy.decide({**facts, "transaction": {"amount": "901", "currency": "USD"}})
    assert first is second
    assert "_T[i]" in policy.python_source
