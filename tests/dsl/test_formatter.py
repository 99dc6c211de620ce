from __future__ import annotations

from pathlib import Path

import pytest

from dsl import format_policy, parse
from tests.dsl.helpers import valid_policies

VALID = valid_policies()


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_fmt_round_trips_every_valid_policy(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    formatted = format_policy(text)
    assert parse(formatted) == parse(text)
    assert format_policy(formatted) == formatted


def test_fmt_aligns_and_normalises_spacing() -> None:
    text = (
        'policy   "p"\n segment a when customer.vip\n    segment long_name    otherwise\nplan otherwise\n'
        'step after 1d via email,sms template "x"\nend\nend'
    )
    assert format_policy(text) == (
        'policy "p"\n'
        "  segment a         when customer.vip\n"
        "  segment long_name otherwise\n"
        "\n"
        "  plan otherwise\n"
        '    step after 1d via email, sms template "x"\n'
        "  end\n"
        "end\n"
    )


def test_fmt_keeps_comments_in_place() -> None:
    text = '# head\npolicy "p"\n  # about holdout\n  holdout 5%   # small\n  # trailing\nend\n# tail\n'
    formatted = format_policy(text)
    assert formatted == (
        '# head\npolicy "p"\n  # about holdout\n  holdout 5%  # small\n  # trailing\nend\n# tail\n'
    )


def test_fmt_keeps_the_meaning_of_nested_conditions() -> None:
    text = (
        'policy "p"\n  segment a when (customer.vip or customer.tags has "x")'
        ' and not (customer.country == "US" or customer.country == "CA")\n'
        '  plan otherwise\n    step after 1d via email template "x"\n  end\nend\n'
    )
    formatted = format_policy(text)
    assert parse(formatted) == parse(text)
    assert '(customer.vip or customer.tags has "x") and not (' in formatted
