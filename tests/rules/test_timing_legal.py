"""The shipped legal windows (data/legal_windows.toml): pinned values, sources, and the file's rules."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from rules.timing import TimeRange
from rules.timing.legal import LegalCap, legal_rules, legal_rules_for, parse_rules


def hours(key: str) -> list[tuple[str, ...]]:
    return [tuple(str(r) for r in day) for day in legal_rules()[key].hours.days]


def test_every_rule_names_its_source() -> None:
    for key, rule in legal_rules().items():
        assert rule.source.strip(), key


def test_us_and_mini_tcpa_states() -> None:
    assert hours("US") == [("08:00-21:00",)] * 7
    for state in ("US-FL", "US-OK"):
        assert hours(state) == [("08:00-20:00",)] * 7
        (cap,) = legal_rules()[state].caps
        assert cap == LegalCap(frozenset({"sms", "whatsapp", "voice"}), 3, timedelta(hours=24))


def test_uk_france_canada_rest_of_world() -> None:
    assert hours("GB") == [("08:00-20:00",)] * 7
    assert hours("FR") == [("10:00-13:00", "14:00-20:00")] * 5 + [(), ()]
    assert legal_rules()["FR"].closed_on_public_holidays
    assert hours("CA") == [("09:00-21:00",)] * 5 + [("10:00-18:00",), ()]
    assert hours("*") == [("09:00-20:00",)] * 7


def test_rules_binding_a_customer() -> None:
    assert [r.key for r in legal_rules_for("US", "FL")] == ["US", "US-FL"]
    assert [r.key for r in legal_rules_for("US", "NY")] == ["US"]
    assert [r.key for r in legal_rules_for("JP", None)] == ["*"]
    assert [r.key for r in legal_rules_for(None, None)] == ["*"]
    assert [r.key for r in legal_rules_for("DE", "BY")] == ["DE"]


def test_file_format_errors() -> None:
    with pytest.raises(ValueError, match="rest-of-world"):
        parse_rules({"rule": [{"keys": ["US"], "source": "x", "days": {"all": ["08:00-21:00"]}}]})
    with pytest.raises(ValueError, match="twice"):
        parse_rules({"rule": [{"keys": ["*", "*"], "source": "x", "days": {"all": ["08:00-21:00"]}}]})
    with pytest.raises(ValueError, match="unknown day"):
        parse_rules({"rule": [{"keys": ["*"], "source": "x", "days": {"funday": ["08:00-21:00"]}}]})


def test_time_range_parsing() -> None:
    assert TimeRange.parse("21:00-08:00") == TimeRange(time(21), time(8))
    assert TimeRange.parse("20:00-24:00").seconds() == ((72000.0, 86400.0),)
    assert TimeRange.parse("21:00-08:00").seconds() == ((0.0, 28800.0), (75600.0, 86400.0))
    assert TimeRange.parse("00:00-00:00").seconds() == ((0.0, 86400.0),)
    with pytest.raises(ValueError):
        TimeRange.parse("0800")
