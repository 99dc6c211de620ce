"""One parser per way of writing a duration: the policy's short form and the plan's ISO 8601."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.durations import MAX_AMOUNT, Duration, DurationError, iso, parse_iso, parse_short


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", Duration(15, "m")),
        ("2h", Duration(2, "h")),
        ("3d", Duration(3, "d")),
        ("1w", Duration(1, "w")),
        ("0m", Duration(0, "m")),
        (f"{MAX_AMOUNT}d", Duration(MAX_AMOUNT, "d")),
    ],
)
def test_short_durations_read_as_written(text, expected):
    assert parse_short(text) == expected
    assert str(parse_short(text)) == text


def test_short_duration_in_seconds_and_iso():
    assert parse_short("15m").seconds == 900 and parse_short("15m").iso() == "PT15M"
    assert parse_short("2h").delta == timedelta(hours=2) and parse_short("2h").iso() == "PT2H"
    assert parse_short("3d").iso() == "P3D"
    assert parse_short("1w").seconds == 7 * 86400 and parse_short("1w").iso() == "P7D"


@pytest.mark.parametrize("text", ["", "15", "m", "15 m", "15s", "1.5h", "-3d", "2y", "3D", "PT2H"])
def test_short_durations_refuse_what_they_cannot_read(text):
    with pytest.raises(DurationError, match="is not a duration: write a number and a unit, like 15m"):
        parse_short(text)


def test_a_short_duration_past_the_limit_says_it_is_too_long():
    with pytest.raises(DurationError, match=f'"{MAX_AMOUNT + 1}d" is too long a wait'):
        parse_short(f"{MAX_AMOUNT + 1}d")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P14D", timedelta(days=14)),
        ("PT2H", timedelta(hours=2)),
        ("PT15M", timedelta(minutes=15)),
        ("PT30S", timedelta(seconds=30)),
        ("P1DT6H", timedelta(days=1, hours=6)),
        ("P2W", timedelta(weeks=2)),
        ("P1W2D", timedelta(days=9)),
        ("PT1H30M5S", timedelta(hours=1, minutes=30, seconds=5)),
        ("P0D", timedelta(0)),
    ],
)
def test_iso_durations(text, expected):
    assert parse_iso(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "14D", "P14", "PT2", "P1H", "PT1D", "P1.5D", "p14d", "P-1D", " P1D", "P1D1D"]
)
def test_iso_durations_refuse_what_they_cannot_read(text):
    with pytest.raises(DurationError, match="not an ISO 8601 duration: .*write one like P14D, PT2H or P1DT6H"):
        parse_iso(text)


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1Y2M3D"])
def test_iso_durations_say_why_months_and_years_are_refused(text):
    with pytest.raises(DurationError, match="months and years have no fixed length"):
        parse_iso(text)


def test_a_non_string_is_refused_clearly():
    with pytest.raises(DurationError, match="not an ISO 8601 duration: 14"):
        parse_iso(14)  # type: ignore[arg-type]


def test_duration_errors_are_value_errors():
    assert issubclass(DurationError, ValueError)


def test_iso_writes_what_parse_iso_reads():
    assert iso(timedelta(days=14)) == "P14D"
    assert iso(timedelta(hours=2)) == "PT2H"
    assert iso(timedelta(days=1, hours=6)) == "P1DT6H"
    assert iso(timedelta(0)) == "PT0S"
    with pytest.raises(DurationError, match="cannot be negative"):
        iso(timedelta(seconds=-1))


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_iso_round_trips_whole_seconds(delta):
    whole = timedelta(days=delta.days, seconds=delta.seconds)
    assert parse_iso(iso(whole)) == whole


@given(st.integers(0, MAX_AMOUNT), st.sampled_from("mhdw"))
def test_a_short_duration_and_its_iso_form_agree(amount, unit):
    duration = parse_short(f"{amount}{unit}")
    assert parse_iso(duration.iso()) == duration.delta
