from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from dsl import PolicyError, compile_policy
from dsl.compiler import _CACHE
from rules.money import FxRates
from tests.dsl.helpers import EXAMPLES, TEMPLATES

PLAN = '  plan otherwise\n    step after 1d via email template "x"\n  end\n'


def segment_of(condition: str, facts: dict[str, Any], rates: FxRates | None = None) -> str | None:
    policy = compile_policy(f'policy "t"\n  segment yes when {condition}\n{PLAN}end\n', fx_rates=rates)
    return policy.decide(facts).segment


def make_facts(**groups: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "now": "2026-11-27T01:30:00Z",
        "customer": {
            "country": "US",
            "successful_payments": 3,
            "tags": ["vip"],
            "lifetime_value": "2310.00",
            "opted_out": ["sms"],
        },
        "transaction": {
            "id": "t-1",
            "amount": "249.00",
            "currency": "USD",
            "failed_at": "2026-11-27T01:25:00Z",
        },
        "decline": {"reason": "insufficient_funds", "kind": "soft"},
    }
    for group, values in groups.items():
        facts[group] = {**facts.get(group, {}), **values}
    return facts


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("transaction.amount >= 249 USD", True),
        ("transaction.amount > 249 USD", False),
        ("transaction.amount == 249.00 USD", True),
        ("transaction.amount between 100 USD and 300 USD", True),
        ("customer.successful_payments == 3", True),
        ("customer.successful_payments != 3", False),
        ("customer.successful_payments in [1, 2, 3]", True),
        ("customer.successful_payments not in [1, 2, 3]", False),
        ('customer.country == "US"', True),
        ('customer.country in ["CA", "MX"]', False),
        ('customer.country not in ["CA", "MX"]', True),
        ('customer.tags has "vip"', True),
        ('customer.opted_out has "email"', False),
        ("customer.vip", True),
        ("not customer.vip", False),
        ("customer.vip == false", False),
        ('decline.kind == "soft" and decline.reason == "insufficient_funds"', True),
        ('decline.kind == "hard" or customer.successful_payments >= 3', True),
        ("transaction.age == 5m", True),
        ("transaction.failed_time < 01:30", True),
        ("transaction.failed_weekday == fri", True),
        ("customer.lifetime_value >= 2000 USD", True),
        ("true", True),
    ],
)
def test_conditions(condition: str, expected: bool) -> None:
    assert (segment_of(condition, make_facts()) == "yes") is expected


@pytest.mark.parametrize(
    "condition",
    [
        "transaction.amount >= 1 USD",
        'customer.country != "US"',
        "customer.successful_payments < 100",
        "history.messages_sent < 3",
        "predicted.recovery_likelihood > 10%",
        "transaction.age > 1m",
    ],
)
def test_a_missing_or_malformed_fact_makes_the_comparison_false(condition: str) -> None:
    broken = {
        "customer": {"country": 7, "successful_payments": "many"},
        "transaction": {"amount": 1.5},
        "history": [],
        "predicted": None,
        "now": "yesterday",
    }
    assert segment_of(condition, broken) is None
    assert segment_of(condition, {}) is None


def test_money_in_another_currency_is_converted_through_the_rates() -> None:
    rates = FxRates("USD", {"EUR": Decimal("1.10")})
    eur = make_facts(transaction={"amount": "100.00", "currency": "EUR"})
    assert segment_of("transaction.amount >= 110 USD", eur, rates) == "yes"
    assert segment_of("transaction.amount > 110 USD", eur, rates) is None


def test_a_missing_exchange_rate_makes_the_condition_false_never_a_crash() -> None:
    gbp = make_facts(transaction={"amount": "1000000.00", "currency": "GBP"})
    rates = FxRates("USD", {"EUR": Decimal("1.10")})
    assert segment_of("transaction.amount >= 1 USD", gbp, rates) is None
    assert segment_of("transaction.amount >= 1 USD", gbp, None) is None
    assert segment_of("not (transaction.amount < 1 USD)", gbp, None) == "yes"  # documented: not of false


def test_percent_literals_compare_with_fractions() -> None:
    facts = make_facts(predicted={"recovery_likelihood": "0.45"})
    assert segment_of("predicted.recovery_likelihood >= 40%", facts) == "yes"
    assert segment_of("predicted.recovery_likelihood >= 50%", facts) is None


def test_the_standard_policy_decides_segment_offers_and_steps() -> None:
    policy = compile_policy((EXAMPLES / "standard.policy").read_text(), known_templates=TEMPLATES)
    big = make_facts(transaction={"amount": "900.00"}, customer={"tags": [], "lifetime_value": "10.00"})
    decision = policy.decide(big)
    assert decision.segment == "high_value"
    assert decision.plan is not None and decision.plan.priority == "high"
    assert [s.line for s in decision.steps] == [34, 35, 36, 37]
    assert [o.name for o in decision.offers] == ["partial_payment", "pay_later"]
    assert decision.offers[1].term == "P7D"
    hard = make_facts(
        transaction={"amount": "900.00"},
        customer={"tags": []},
        decline={"kind": "hard", "reason": "do_not_honor"},
    )
    assert [s.line for s in policy.decide(hard).steps] == [34, 35, 37]  # the soft-only retry is dropped
    assert [o.name for o in policy.decide(hard).offers] == ["update_card", "bank_transfer"]
    urgent = make_facts(transaction={"amount": "2500.00"})
    assert policy.decide(urgent).ignores == {"business_hours", "weekends"}


def test_policy_timing_settings_are_exposed_for_the_planner() -> None:
    timing = compile_policy((EXAMPLES / "standard.policy").read_text()).timing
    assert timing.skip_holidays and not timing.skip_weekends
    assert timing.cadence is not None and (timing.cadence.per_day, timing.cadence.per_week) == (1, 3)
    florida = timing.quiet_hours_for("US", "FL")
    assert florida is not None and (florida.start.hour, florida.end.hour) == (20, 8)
    texas = timing.quiet_hours_for("US", "TX")
    assert texas is not None and texas.start.hour == 21
    general = timing.business_hours_for("US", "TX")
    assert general is not None and general.windows[0].days == (0, 1, 2, 3, 4)


def test_compiled_policies_are_cached_per_version_and_source() -> None:
    text = (EXAMPLES / "standard.policy").read_text()
    first = compile_policy(text, version=7)
    assert compile_policy(text, version=7) is first
    assert compile_policy(text, version=8) is not first
    assert compile_policy(text + "\n", version=7) is not first
    assert len(_CACHE) <= 128


def test_a_policy_with_errors_does_not_compile() -> None:
    with pytest.raises(PolicyError) as caught:
        compile_policy('policy "p"\n  segment a when transaction.amountqq > 1 USD\nend\n')
    assert caught.value.line == 2


def test_explain_lists_every_condition_in_source_order() -> None:
    policy = compile_policy((EXAMPLES / "standard.policy").read_text())
    results = policy.explain(make_facts())
    assert [r.line for r in results] == sorted(r.line for r in results)
    vip = results[0]
    assert (vip.kind, vip.line, vip.value) == ("segment", 3, True)
    assert {r.kind for r in results} == {"segment", "part", "override", "offer", "step"}


def test_a_thousand_line_policy_compiles_and_decides() -> None:
    lines = [
        f"  segment s{i} when customer.successful_payments == {i} and transaction.amount > {i} USD"
        for i in range(520)
    ]
    plans = [f'  plan for s{i}\n    step after 1d via email template "x"\n  end' for i in range(0, 520, 3)]
    text = (
        'policy "big"\n' + "\n".join(lines) + '\n  plan otherwise\n    step after 1d via email template "x"\n'
        "  end\n" + "\n".join(plans) + "\nend\n"
    )
    assert text.count("\n") >= 1000
    policy = compile_policy(text)
    assert (
        policy.decide(make_facts(customer={"successful_payments": 5}, transaction={"amount": "9"})).segment
        == "s5"
    )
