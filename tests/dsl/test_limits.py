"""The size limits of the policy language (dsl.limits): each is a Diagnostic with a line and a column, from ``check``
and from ``compile_policy`` alike, never RecursionError or another exception; and what passes ``check`` compiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from dsl import PolicyError, check, compile_policy, limits
from tests.dsl.helpers import EXAMPLES, RATES, TEMPLATES

T = TypeVar("T")
TAIL = '  segment rest otherwise\n  plan otherwise\n    step after 1h via email template "payment_failed"\n  end\nend\n'


def policy_with(*lines: str) -> str:
    return 'policy "limits"\n' + "".join(f"  {line}\n" for line in lines) + TAIL


def errors_of(text: str) -> list[str]:
    found = check(text, known_templates=TEMPLATES, fx_rates=RATES)
    try:
        compile_policy(text, known_templates=TEMPLATES, fx_rates=RATES)
    except PolicyError as exc:
        assert [d.message for d in exc.errors] == [d.message for d in found if d.is_error]
    else:
        assert not any(d.is_error for d in found)
    return [f"{d.line}:{d.col}: {d.message}" for d in found if d.is_error]


def at_depth(depth: int, call: Callable[[], T]) -> T:
    """``call()`` from ``depth`` frames down, as it would be from inside a web request or a worker."""
    return call() if depth == 0 else at_depth(depth - 1, call)


@pytest.mark.parametrize("opener, closer", [("(", ")"), ("not ", "")])
@pytest.mark.parametrize("depth", [limits.MAX_CONDITION_DEPTH, 1000, 5000])
def test_a_deeply_nested_condition_is_a_language_error(opener: str, closer: str, depth: int) -> None:
    text = policy_with("segment a when " + opener * depth + "customer.vip" + closer * depth)
    [problem] = errors_of(text)  # even 32 parentheses are one level too many: the condition is the first
    assert problem.startswith("2:") and "nested too deeply" in problem and "32 levels" in problem


def test_the_deepest_nesting_allowed_checks_and_compiles() -> None:
    deepest = limits.MAX_CONDITION_DEPTH - 1  # the condition itself is the first level
    text = policy_with("segment a when " + "(" * deepest + "customer.vip" + ")" * deepest)
    assert errors_of(text) == []
    one_more = policy_with("segment a when " + "(" * (deepest + 1) + "customer.vip" + ")" * (deepest + 1))
    assert "nested too deeply" in errors_of(one_more)[0]


def test_three_thousand_segments_are_a_language_error() -> None:
    text = policy_with(*(f"segment s{i} when transaction.amount >= {i} USD" for i in range(3000)))
    [problem] = errors_of(text)
    assert "too long" in problem


@pytest.mark.parametrize(
    "what, line, limit",
    [
        ("segments", "segment s{i} when customer.successful_payments == {i}", limits.MAX_SEGMENTS),
        ("overrides", "override when transaction.amount >= {i} USD: ignore weekends", limits.MAX_OVERRIDES),
    ],
)
def test_one_more_than_a_count_limit_is_an_error_at_the_one_too_many(what: str, line: str, limit: int) -> None:
    # The tail adds one segment ("rest"): fill up to the limit with it, then one more.
    extra = 1 if what == "segments" else 0
    at_limit = policy_with(*(line.format(i=i) for i in range(limit - extra)))
    assert errors_of(at_limit) == []
    over = policy_with(*(line.format(i=i) for i in range(limit - extra + 1)))
    [problem] = errors_of(over)
    assert f"at most {limit}" in problem and what in problem
    assert problem.startswith(f"{limit + 2}:3:")  # line 1 is the policy line; the limit+1-th is the one too many


def test_too_many_steps_offer_rules_and_condition_parts() -> None:
    steps = [f'  step after {i + 1}h via email template "payment_failed"' for i in range(limits.MAX_STEPS_PER_PLAN + 1)]
    text = policy_with("segment a when customer.vip", "plan for a", *steps, "end")
    assert any(f"at most {limits.MAX_STEPS_PER_PLAN}" in p for p in errors_of(text))
    rules = [f"  when transaction.amount >= {i} USD offer update_card" for i in range(limits.MAX_OFFER_RULES + 1)]
    assert any(f"at most {limits.MAX_OFFER_RULES}" in p for p in errors_of(policy_with("offers", *rules, "end")))
    parts = " or ".join(f"customer.successful_payments == {i}" for i in range(limits.MAX_CONDITION_PARTS + 1))
    assert f"at most {limits.MAX_CONDITION_PARTS}" in errors_of(policy_with(f"segment a when {parts}"))[0]


def test_text_over_the_size_cap_is_refused_before_it_is_read() -> None:
    text = policy_with("segment a when customer.vip") + "#" * (2 * 1024 * 1024)
    [problem] = errors_of(text)
    line = text.count("\n", 0, limits.MAX_POLICY_CHARS) + 1
    assert problem.startswith(f"{line}:") and "too long" in problem and "65,536" in problem
    at_cap = policy_with("segment a when customer.vip")
    at_cap += "#" * (limits.MAX_POLICY_CHARS - len(at_cap))
    assert len(at_cap) == limits.MAX_POLICY_CHARS and errors_of(at_cap) == []


def everything_at_the_limits() -> str:
    """A policy at every count limit at once, with its deepest condition: the largest the language allows."""
    deep = limits.MAX_CONDITION_DEPTH - 1
    lines = [
        f"segment s{i} when not customer.successful_payments == {i} and customer.vip"
        for i in range(limits.MAX_SEGMENTS - 2)
    ]
    lines.append("segment deep when " + "(" * deep + "customer.vip" + ")" * deep)
    lines += [f"override when transaction.amount >= {i} USD: ignore weekends" for i in range(limits.MAX_OVERRIDES)]
    lines += [
        "offers",
        *(f"  when transaction.amount >= {i} USD offer update_card" for i in range(limits.MAX_OFFER_RULES - 1)),
    ]
    lines += ["  otherwise offer update_card", "end", "plan for deep"]
    lines += [
        f'  step after {i + 1}h via email template "payment_failed" when customer.vip'
        for i in range(limits.MAX_STEPS_PER_PLAN)
    ]
    lines.append("end")
    return policy_with(*lines)


def test_the_largest_policy_allowed_compiles_even_from_a_deep_stack() -> None:
    """What passes check compiles: the limits leave CPython's compiler room, even 600 frames down."""
    text = everything_at_the_limits()
    assert len(text) <= limits.MAX_POLICY_CHARS
    assert at_depth(600, lambda: check(text, known_templates=TEMPLATES, fx_rates=RATES)) == []
    policy = at_depth(600, lambda: compile_policy(text, version=-1, known_templates=TEMPLATES, fx_rates=RATES))
    assert policy.decide({"customer": {"vip": True, "successful_payments": 0}}).segment == "s1"


def test_check_runs_the_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy that the compiler cannot build does not pass check (so it cannot be submitted and approved)."""
    import dsl

    def fails(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded during compilation")

    monkeypatch.setattr(dsl, "build", fails)
    text = (EXAMPLES / "standard.policy").read_text(encoding="utf-8")
    [problem] = [d for d in check(text, known_templates=TEMPLATES, fx_rates=RATES) if d.is_error]
    assert problem.line == 1 and "too large or complex to compile" in problem.message
