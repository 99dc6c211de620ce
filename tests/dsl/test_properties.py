"""Property tests: whatever the text, the language answers with its own errors, never another exception."""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import PolicyError, check, compile_policy, format_policy, parse
from dsl import parser as parser_module
from dsl.parser import MAX_ERRORS
from tests.dsl.helpers import RATES, TEMPLATES, valid_policies

SETTINGS = settings(
    max_examples=int(os.environ.get("DSL_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VALID_TEXTS = [p.read_text(encoding="utf-8") for p in valid_policies()]
WORDS = [
    "policy",
    "segment",
    "when",
    "otherwise",
    "plan",
    "for",
    "end",
    "step",
    "after",
    "via",
    "template",
    "retry",
    "payment",
    "offers",
    "offer",
    "business",
    "hours",
    "quiet",
    "in",
    "skip",
    "holidays",
    "cadence",
    "max",
    "per",
    "day",
    "override",
    "ignore",
    "holdout",
    "and",
    "or",
    "not",
    "has",
    "between",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "-",
    "==",
    "<",
    ">=",
    '"x"',
    "500 USD",
    "5%",
    "2d",
    "09:00",
    "mon",
    "customer.vip",
    "transaction.amount",
    "decline.kind",
    "\n",
    "#",
    "1.5",
    "true",
    "variants",
    "A",
]


def _must_only_raise_policy_errors(text: str) -> None:
    try:
        found = check(text, known_templates=TEMPLATES, fx_rates=RATES)
    except PolicyError:  # pragma: no cover - check reports, it does not raise
        raise AssertionError("check() raised instead of returning diagnostics") from None
    for diagnostic in found:
        assert diagnostic.line >= 1 and diagnostic.col >= 1
        assert diagnostic.message and "Token" not in diagnostic.message and "__ANON" not in diagnostic.message
    if not any(d.is_error for d in found):
        compiled = compile_policy(text, known_templates=TEMPLATES, fx_rates=RATES)
        compiled.decide({})  # empty facts: every condition false, no crash
        formatted = format_policy(text)
        assert parse(formatted) == parse(text)
    else:
        try:
            compile_policy(text, known_templates=TEMPLATES, fx_rates=RATES)
        except PolicyError:
            pass
        else:  # pragma: no cover
            raise AssertionError("a policy with errors compiled")


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_gives_only_policy_errors(text: str) -> None:
    _must_only_raise_policy_errors(text)


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join))
def test_random_word_soup_gives_only_policy_errors(text: str) -> None:
    _must_only_raise_policy_errors('policy "p"\n' + text + "\nend\n")


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(VALID_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(text) - 1, 0)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "word", "swap_lines"]))
        if action == "delete":
            length = draw(st.integers(1, 12))
            text = text[:position] + text[position + length :]
        elif action == "insert":
            text = text[:position] + draw(st.text(min_size=1, max_size=5)) + text[position:]
        elif action == "replace":
            text = text[:position] + draw(st.characters()) + text[position + 1 :]
        elif action == "word":
            text = text[:position] + " " + draw(st.sampled_from(WORDS)) + " " + text[position:]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@SETTINGS
@given(mutated_policies())
def test_mutated_valid_policies_give_only_policy_errors(text: str) -> None:
    _must_only_raise_policy_errors(text)


def test_parsing_work_stays_linear_when_every_line_is_wrong() -> None:
    """Error recovery re-parses at most MAX_ERRORS times, whatever the size: n and 4n bad lines cost alike."""
    real = parser_module._lark()
    counts = []
    for size in (50, 200):
        body = "".join("  holdout 5\n" for _ in range(size))
        with mock.patch.object(type(real), "parse", autospec=True, side_effect=type(real).parse) as spy:
            try:
                parse(f'policy "p"\n{body}end\n')
            except PolicyError:
                pass
        counts.append(spy.call_count)
    assert counts[0] == counts[1] == MAX_ERRORS
