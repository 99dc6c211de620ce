"""``holdout 5% with retries``: parsed, checked, compiled into CompiledPolicy.holdout_keeps_retries, formatted back;
plain ``holdout 5%`` keeps nothing, as before."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import PolicySyntaxError, check, compile_policy, format_policy, parse
from dsl import nodes as n
from tests.dsl.helpers import TEMPLATES, VALID

TEXT = """policy "p"
  holdout 5% with retries

  plan otherwise
    step after 1d via email template "payment_failed"
    step after 2d retry payment
  end
end
"""


def test_with_retries_parses_into_the_holdout_node() -> None:
    [holdout, _] = parse(TEXT).statements
    assert isinstance(holdout, n.Holdout)
    assert (holdout.percent.value, holdout.with_retries, holdout.line, holdout.col) == (Decimal(5), True, 2, 3)
    [plain, _] = parse(TEXT.replace(" with retries", "")).statements
    assert isinstance(plain, n.Holdout) and not plain.with_retries
    assert plain != holdout  # a different holdout, not the same one written otherwise


def test_it_compiles_into_holdout_keeps_retries() -> None:
    policy = compile_policy(TEXT)
    assert (policy.holdout_percent, policy.holdout_keeps_retries) == (Decimal(5), True)
    plain = compile_policy(TEXT.replace(" with retries", ""))
    assert (plain.holdout_percent, plain.holdout_keeps_retries) == (Decimal(5), False)
    assert compile_policy(TEXT.replace("  holdout 5% with retries\n", "")).holdout_keeps_retries is False


def test_the_formatter_writes_it_back() -> None:
    messy = TEXT.replace("holdout 5% with retries", "holdout   5%   with    retries")
    assert format_policy(messy) == TEXT
    assert parse(format_policy(messy)) == parse(messy)
    text = (VALID / "holdout_with_retries.policy").read_text(encoding="utf-8")
    assert format_policy(text) == text


@pytest.mark.parametrize(
    ("line", "col", "message"),
    [
        ("holdout 5% with messages", 19, 'expected "retries", but found "messages"'),
        ("holdout 5% with", 18, 'expected "retries", but found the end of the line'),
        ("holdout 5% retries", 14, 'expected "with" or the end of the line, but found "retries"'),
    ],
)
def test_anything_else_after_the_share_is_a_syntax_error_at_its_word(line: str, col: int, message: str) -> None:
    with pytest.raises(PolicySyntaxError) as raised:
        parse(TEXT.replace("holdout 5% with retries", line))
    [found] = raised.value.diagnostics
    assert (found.line, found.col, found.message) == (2, col, message)


def test_with_retries_and_no_retry_step_is_a_warning() -> None:
    text = TEXT.replace("    step after 2d retry payment\n", "")
    [warning] = check(text, known_templates=TEMPLATES)
    assert not warning.is_error and (warning.line, warning.col) == (2, 3)
    assert "no plan has a retry payment step" in warning.message
    assert check(TEXT, known_templates=TEMPLATES) == []
    assert check(text.replace(" with retries", ""), known_templates=TEMPLATES) == []


def test_an_arm_still_may_not_write_the_holdout() -> None:
    block = '  experiment "x"\n    arm a 50%\n    arm b 50%\n      holdout 5% with retries\n    end\n  end\nend\n'
    text = TEXT.removesuffix("end\n") + block
    found = [d for d in check(text, known_templates=TEMPLATES) if d.is_error]
    assert [(d.line, d.message.split(":")[0]) for d in found] == [
        (11, "the holdout belongs to the base policy, not to an arm")
    ]
