from __future__ import annotations

from decimal import Decimal

import pytest

from dsl import PolicySyntaxError, parse
from dsl import nodes as n
from dsl.parser import MAX_ERRORS
from tests.dsl.helpers import EXAMPLES


def test_the_standard_example_parses_with_positions() -> None:
    text = (EXAMPLES / "standard.policy").read_text()
    policy = parse(text)
    assert policy.name == "standard"
    vip = policy.statements[0]
    assert isinstance(vip, n.Segment) and vip.name.text == "vip"
    assert (vip.line, vip.col) == (3, 3)
    assert isinstance(vip.condition, n.Or)
    money = vip.condition.items[1]
    assert isinstance(money, n.Compare) and money.right == n.MoneyLit(Decimal(5000), "USD")
    plans = [s for s in policy.statements if isinstance(s, n.Plan)]
    assert [p.segments[0].text for p in plans] == ["vip", "high_value", "first_time"]
    retry = plans[1].steps[2]
    assert isinstance(retry, n.RetryStep) and retry.line == 36 and retry.after == n.Duration(3, "d")


def test_every_node_of_the_tree_has_a_position() -> None:
    policy = parse((EXAMPLES / "standard.policy").read_text())

    def walk(node: object) -> None:
        if isinstance(node, n.Node):
            assert node.line > 0 and node.col > 0, node
        if isinstance(node, tuple):
            for item in node:
                walk(item)
        elif hasattr(node, "__dataclass_fields__"):
            for name in node.__dataclass_fields__:
                walk(getattr(node, name))

    walk(policy)


def test_positions_take_no_part_in_equality() -> None:
    a = parse('policy "p"\n  holdout 5%\nend\n')
    b = parse('\n\npolicy "p"\n      holdout 5%\nend')
    assert a == b


def test_several_errors_are_reported_in_one_pass() -> None:
    text = 'policy "p"\n  holdout 5\n  quiet hours 9-18\n  cadence max 1 per fortnight\nend\n'
    with pytest.raises(PolicySyntaxError) as caught:
        parse(text)
    assert [(d.line, d.col) for d in caught.value.diagnostics] == [(2, 11), (3, 15), (4, 21)]


def test_error_carries_the_source_line_and_a_caret() -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        parse('policy "p"\n  segment a when customer.country = "US"\nend\n')
    error = caught.value
    assert (error.line, error.col) == (2, 35)
    assert error.source_line == '  segment a when customer.country = "US"'
    assert error.render("f.policy").splitlines() == [
        'f.policy:2:35: use "==" to compare two values',
        '      segment a when customer.country = "US"',
        "                                      ^",
    ]


def test_error_count_is_capped() -> None:
    body = "".join("  holdout 5\n" for _ in range(MAX_ERRORS + 10))
    with pytest.raises(PolicySyntaxError) as caught:
        parse(f'policy "p"\n{body}end\n')
    assert len(caught.value.diagnostics) == MAX_ERRORS


def test_keywords_are_words_only_where_the_grammar_expects_them() -> None:
    policy = parse(
        'policy "p"\n  segment plan when customer.tags has "end"\n  plan for plan\n'
        '    step after 1d via email template "x"\n  end\nend\n'
    )
    segment = policy.statements[0]
    assert isinstance(segment, n.Segment) and segment.name.text == "plan"


def test_comments_are_kept_with_their_lines() -> None:
    policy = parse('# top\npolicy "p"  # name\n  holdout 5%\n  # before end\nend\n')
    assert [(c.line, c.text, c.trailing) for c in policy.comments] == [
        (1, "# top", False),
        (2, "# name", True),
        (4, "# before end", False),
    ]


def test_hash_inside_quotes_is_not_a_comment() -> None:
    policy = parse('policy "p#1"\n  holdout 5%\nend\n')
    assert policy.name == "p#1" and policy.comments == ()
