"""Property tests of ``next_send_time`` against a brute-force oracle.

The oracle knows nothing of the scheduler's interval tables: it converts one instant to each zone with
``datetime.astimezone`` and checks every rule there. The scheduler's answer must be allowed, not before
``earliest``, and the *first* allowed instant: no earlier candidate (``earliest`` itself, then every whole
minute, which is where every window and cap boundary falls in these cases) may be allowed. The reasons must
be what held the message back: everything closed at ``earliest``, then everything closed at the first
instant where none of that is closed any more, and so on up to the answer.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.timing import (
    REASONS,
    CadenceCaps,
    ContactHistory,
    ContactRules,
    SentRecord,
    TimeRange,
    WeeklyHours,
    next_send_time,
)
from rules.timing.calendar import weekend_days
from rules.timing.legal import legal_rules_for
from rules.timing.zones import normalize_country, normalize_region, zone_country

ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Australia/Perth",
    "America/Santiago",
    "Pacific/Easter",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Riyadh",
    "America/Toronto",
]
# DST transition days 2025-2026: US, EU, Australia (south-east and Lord Howe), Chile.
TRANSITIONS = [
    date(2025, 3, 9),
    date(2025, 11, 2),
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2025, 3, 30),
    date(2025, 10, 26),
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2025, 4, 6),
    date(2025, 10, 5),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2025, 4, 5),
    date(2025, 9, 6),
    date(2026, 4, 4),
    date(2026, 9, 5),
]
PLACES = [
    (None, None),
    ("US", "FL"),
    ("US", "NY"),
    ("FR", None),
    ("DE", "BY"),
    ("CA", "ON"),
    ("SA", None),
    ("GB", None),
]
CHANNELS = ["sms", "email", "whatsapp"]
HORIZON = timedelta(days=3)


# ------------------------------------------------------------------------------------------------ oracle


def _secs(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _contains(r: TimeRange, x: float) -> bool:
    s, e = _secs(r.start), _secs(r.end)
    if s == e:
        return True
    if e == 0:
        return x >= s
    if s < e:
        return s <= x < e
    return x >= s or x < e


@functools.cache
def _holidays(cc: str | None, sub: str | None, year: int) -> frozenset[date]:
    if not cc or cc not in holidays.list_supported_countries():
        return frozenset()
    supported = holidays.list_supported_countries()[cc]
    return frozenset(holidays.country_holidays(cc, subdiv=sub if sub in supported else None, years=year))


def closed_at(at: datetime, zones, channel, rules: ContactRules, country, region) -> set[str]:
    """Every rule that forbids a message at ``at`` in some zone (empty = allowed by the windows)."""
    closed: set[str] = set()
    cc = normalize_country(country)
    sub = normalize_region(cc, region) if cc else None
    for name in zones:
        zcc = cc or zone_country(name)
        zsub = sub if cc else None
        local = at.astimezone(ZoneInfo(name))
        d, x = local.date(), _secs(local.time())
        hols = _holidays(zcc, zsub, d.year)
        for rule in legal_rules_for(zcc, zsub):
            if not rule.binds(channel):
                continue
            if not any(_contains(r, x) for r in rule.hours.days[d.weekday()]):
                closed.add("legal_window")
            if rule.closed_on_public_holidays and d in hols:
                closed.add("legal_window")
        if any(_contains(r, x) for r in rules.quiet_hours_for(zcc, zsub)):
            closed.add("quiet_hours")
        business = rules.business_hours_for(zcc, zsub)
        if business is not None and not rules.override_business_hours:
            if not any(_contains(r, x) for r in business.days[d.weekday()]):
                closed.add("business_hours")
        if rules.skip_holidays and d in hols:
            closed.add("holiday")
        if rules.skip_weekends and not rules.override_weekends and d.weekday() in weekend_days(zcc, d.year):
            closed.add("weekend")
        if d in rules.blackout_dates:
            closed.add("blackout")
    return closed


def cadence_blocked(
    at: datetime, channel: str, rules: ContactRules, country, region, zones, history: ContactHistory
) -> bool:
    caps: list[tuple[int, timedelta, set[str] | None]] = []
    c = rules.cadence
    if c.max_per_day is not None:
        caps.append((c.max_per_day, timedelta(days=1), None))
    if c.max_per_week is not None:
        caps.append((c.max_per_week, timedelta(days=7), None))
    if c.min_gap:
        caps.append((1, c.min_gap, None))
    if c.max_per_channel_per_day is not None:
        caps.append((c.max_per_channel_per_day, timedelta(days=1), {channel}))
    cc = normalize_country(country)
    sub = normalize_region(cc, region) if cc else None
    legal_caps = {
        cap
        for z in zones
        for rule in legal_rules_for(cc or zone_country(z), sub if cc else None)
        for cap in rule.caps
        if channel in cap.channels
    }
    caps += [(cap.max_messages, cap.period, set(cap.channels)) for cap in legal_caps]
    for n, period, channels in caps:
        times = sorted([r.at for r in history.sent if channels is None or r.channel in channels] + [at])
        i = times.index(at)
        for j in range(max(0, i - n), i + 1):
            if j + n < len(times) and times[j + n] - times[j] < period:
                return True
    return False


def oracle_closed(at, zones, channel, rules, country, region, history) -> set[str]:
    closed = closed_at(at, zones, channel, rules, country, region)
    if cadence_blocked(at, channel, rules, country, region, zones, history):
        closed.add("cadence")
    return closed


# ---------------------------------------------------------------------------------------------- strategies

minutes = st.integers(0, 24 * 4 - 1).map(lambda q: time(q // 4, (q % 4) * 15))
any_minute = st.integers(0, 1439).map(lambda m: time(m // 60, m % 60))
ranges = st.builds(TimeRange, st.one_of(minutes, any_minute), st.one_of(minutes, any_minute))
# Quiet ranges of at most 12 hours, most of them overnight.
quiet_ranges = st.builds(
    lambda start, hours: TimeRange(
        start, (datetime.combine(date(2000, 1, 1), start) + timedelta(minutes=hours)).time()
    ),
    st.one_of(minutes, any_minute),
    st.integers(15, 12 * 60),
)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    day = draw(st.sampled_from(TRANSITIONS)) + timedelta(days=draw(st.integers(-2, 1)))
    seconds = draw(st.integers(0, 86399))
    micro = draw(st.sampled_from([0, 0, 123456]))
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=micro)


def maybe(strategy: st.SearchStrategy, none_weight: int = 2) -> st.SearchStrategy:
    """``None`` most of the time (so that several constraints rarely close the whole horizon at once)."""
    return st.one_of(*([st.none()] * none_weight), strategy)


@st.composite
def contact_rules(draw: st.DrawFn, near: datetime) -> ContactRules:
    business = draw(
        maybe(
            st.one_of(
                st.lists(ranges, min_size=1, max_size=2).map(lambda rs: WeeklyHours.weekdays(*rs)),
                st.lists(ranges, min_size=1, max_size=2).map(lambda rs: WeeklyHours.every_day(*rs)),
            )
        )
    )
    blackouts = draw(
        maybe(
            st.frozensets(
                st.integers(-1, 2).map(lambda k: (near + timedelta(days=k)).date()), min_size=1, max_size=2
            )
        )
    )
    cadence = CadenceCaps(
        max_per_day=draw(maybe(st.integers(1, 3))),
        max_per_week=draw(maybe(st.integers(1, 6))),
        min_gap=draw(maybe(st.integers(1, 600).map(lambda m: timedelta(minutes=m)))),
        max_per_channel_per_day=draw(maybe(st.integers(1, 2))),
    )
    return ContactRules(
        business_hours=business,
        quiet_hours=tuple(draw(st.lists(quiet_ranges, max_size=2))),
        quiet_hours_by_region=draw(st.sampled_from([{}, {"US-FL": (TimeRange(time(20), time(9)),)}])),
        skip_holidays=draw(st.booleans()),
        skip_weekends=draw(st.booleans()),
        blackout_dates=blackouts or frozenset(),
        cadence=cadence,
        override_business_hours=draw(st.booleans()),
        override_weekends=draw(st.booleans()),
    )


@st.composite
def scenarios(draw: st.DrawFn):
    earliest = draw(instants())
    zones = tuple(
        draw(
            st.lists(
                st.sampled_from(ZONES), min_size=1, max_size=draw(st.sampled_from([1, 1, 2, 3])), unique=True
            )
        )
    )
    country, region = draw(st.sampled_from(PLACES))
    channel = draw(st.sampled_from(CHANNELS))
    rules = draw(contact_rules(earliest))
    base = earliest.replace(second=0, microsecond=0)
    history = ContactHistory(
        tuple(
            SentRecord(base + timedelta(minutes=m), ch)
            for m, ch in draw(
                st.lists(st.tuples(st.integers(-2 * 1440, 1440), st.sampled_from(CHANNELS)), max_size=5)
            )
        )
    )
    return earliest, zones, country, region, channel, rules, history


# ------------------------------------------------------------------------------------------------- tests


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_first_allowed_instant_matches_brute_force(scenario) -> None:
    earliest, zones, country, region, channel, rules, history = scenario
    result = next_send_time(
        earliest, zones, channel, rules, country=country, region=region, history=history, horizon=HORIZON
    )

    def closed(at: datetime) -> set[str]:
        return oracle_closed(at, zones, channel, rules, country, region, history)

    def candidates(start: datetime, end: datetime):
        """``start``, then every whole minute after it, up to (not including) ``end``."""
        at = start
        minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while at < end:
            yield at
            at = minute
            minute += timedelta(minutes=1)

    end = result.send_at if result.send_at is not None else earliest + HORIZON
    for at in candidates(earliest, end):
        assert closed(at), f"{at} is allowed but the scheduler said {result}"

    # Reasons: take what is closed at earliest, move to where none of that is closed, repeat.
    expected: set[str] = set()
    point: datetime | None = earliest
    while point is not None and point < end:
        now_closed = closed(point)
        expected |= now_closed
        point = next((at for at in candidates(point, end) if not closed(at) & now_closed), None)

    if result.send_at is None:
        assert result.note
    else:
        assert result.send_at.tzinfo == UTC
        assert result.send_at >= earliest
        assert closed(result.send_at) == set(), f"{result.send_at} is closed: {closed(result.send_at)}"
    assert set(result.reasons) == expected, (result, expected)
    assert list(result.reasons) == [r for r in REASONS if r in expected]
    assert bool(result.reasons) == (result.send_at != earliest)


@settings(max_examples=100, deadline=None)
@given(
    instants(),
    st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
    st.lists(ranges, min_size=1, max_size=2),
)
def test_never_in_quiet_hours_of_any_zone(
    earliest: datetime, zones: list[str], quiet: list[TimeRange]
) -> None:
    rules = ContactRules(quiet_hours=tuple(quiet))
    result = next_send_time(earliest, zones, "sms", rules, horizon=timedelta(days=5))
    if result.send_at is None:
        return
    assert result.send_at >= earliest
    for name in zones:
        local = result.send_at.astimezone(ZoneInfo(name)).time()
        assert not any(_contains(r, _secs(local)) for r in quiet), (name, local)
