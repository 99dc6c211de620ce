"""Benchmark: ``next_send_time`` over many cases with mixed zones, against a hand-written baseline.

The baseline only converts each case's zones and checks one fixed 09:00-20:00 window (no legal rules,
holidays, weekends, business hours or cadence). Both run in the same process on the same cases, so the ratio
is what matters, not the absolute rates. Target: the timing core within 3x of the baseline.

Cases look like a planner's: failures arriving over a week (across US Thanksgiving), each step due 0-72 h
later, in 23 places (single zones, split states, multi-zone candidates), three rule sets (defaults, urgent
override, business hours), 30% with a contact history. Two passes are reported: the first pays the one-time
costs (importing ``holidays``, building calendars and per-zone day tables); the second runs *new* cases over
the same week, so the calendars and window tables are warm but no answer is reused.

    .venv/bin/python bench/timing.py [--n 100000] [--seed 7] [--days 7]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules.timing import (  # noqa: E402
    CadenceCaps,
    ContactHistory,
    ContactRules,
    SentRecord,
    TimeRange,
    WeeklyHours,
    next_send_time,
)

# (zones, country, region): single zones mostly, some split-state and address/phone conflicts.
PLACES: list[tuple[tuple[str, ...], str | None, str | None]] = [
    (("America/New_York",), "US", "NY"),
    (("America/New_York",), "US", "FL"),
    (("America/Chicago",), "US", "FL"),
    (("America/Chicago",), "US", "TX"),
    (("America/Denver",), "US", "TX"),
    (("America/Los_Angeles",), "US", "CA"),
    (("America/Phoenix",), "US", "AZ"),
    (("America/New_York", "America/Chicago"), "US", "FL"),
    (("America/Chicago", "America/Denver"), "US", "NE"),
    (("America/Toronto",), "CA", "ON"),
    (("America/Vancouver",), "CA", "BC"),
    (("Europe/London",), "GB", None),
    (("Europe/Paris",), "FR", None),
    (("Europe/Berlin",), "DE", "BY"),
    (("Europe/Berlin",), "DE", "BE"),
    (("Asia/Riyadh",), "SA", None),
    (("Asia/Dubai",), "AE", None),
    (("Asia/Kolkata",), "IN", None),
    (("Australia/Sydney",), "AU", "NSW"),
    (("Australia/Perth", "Australia/Adelaide"), "AU", None),
    (("America/Santiago",), "CL", None),
    (("America/Sao_Paulo",), "BR", None),
    (("Asia/Tokyo",), None, None),
]
CHANNELS = ("email", "sms", "whatsapp")

DEFAULT = ContactRules.default()
URGENT = ContactRules(
    business_hours=WeeklyHours.weekdays("09:00-18:00"),
    quiet_hours=(TimeRange.parse("21:00-08:00"),),
    skip_holidays=True,
    skip_weekends=True,
    cadence=CadenceCaps(max_per_day=3, max_per_week=7, min_gap=timedelta(hours=2)),
    override_business_hours=True,
    override_weekends=True,
)
BUSINESS = ContactRules(
    business_hours=WeeklyHours.weekdays("09:00-17:00"),
    quiet_hours=(TimeRange.parse("20:00-09:00"),),
    skip_holidays=True,
    skip_weekends=True,
    cadence=CadenceCaps(max_per_day=2, max_per_week=5, max_per_channel_per_day=1),
)
RULES = (DEFAULT, URGENT, BUSINESS)


@dataclass(frozen=True)
class Case:
    earliest: datetime
    zones: tuple[str, ...]
    country: str | None
    region: str | None
    channel: str
    rules: ContactRules
    history: ContactHistory


def make_cases(n: int, seed: int, spread_days: int) -> list[Case]:
    """Failures arriving over ``spread_days`` (from 2026-11-20, across US Thanksgiving), each step due 0-72 h
    after its failure."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    cases = []
    for _ in range(n):
        failed = start + timedelta(seconds=rng.randrange(spread_days * 86400))
        earliest = failed + timedelta(minutes=rng.randrange(72 * 60))
        zones, country, region = rng.choice(PLACES)
        history: ContactHistory = ContactHistory()
        if rng.random() < 0.3:
            history = ContactHistory(
                tuple(
                    SentRecord(earliest - timedelta(minutes=rng.randrange(1, 3 * 1440)), rng.choice(CHANNELS))
                    for _ in range(rng.randrange(1, 5))
                )
            )
        cases.append(Case(earliest, zones, country, region, rng.choice(CHANNELS), rng.choice(RULES), history))
    return cases


_ZONEINFO: dict[str, ZoneInfo] = {}


def baseline(earliest: datetime, zones: tuple[str, ...]) -> datetime:
    """Convert to each zone and push to the next 09:00 when outside 09:00-20:00 (one pass, no rules)."""
    at = earliest
    for name in zones:
        tz = _ZONEINFO.get(name)
        if tz is None:
            tz = _ZONEINFO[name] = ZoneInfo(name)
        local = at.astimezone(tz)
        if not 9 <= local.hour < 20:
            opening = local.replace(hour=9, minute=0, second=0, microsecond=0)
            if local.hour >= 20:
                opening += timedelta(days=1)
            at = opening.astimezone(UTC)
    return at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=7, help="failures spread over this many days (default 7)")
    args = parser.parse_args(argv)
    first = make_cases(args.n, args.seed, args.days)
    second = make_cases(args.n, args.seed + 1, args.days)
    print(
        f"{args.n} cases: {len(PLACES)} places, {len(RULES)} rule sets, 30% with history; failures over "
        f"{args.days} days from 2026-11-20, steps due 0-72 h later"
    )
    run("first pass (cold: imports holidays, builds calendars and window tables)", first)
    run("steady state (new cases, same week: caches warm, answers not)", second)
    return 0


def run(title: str, cases: list[Case]) -> None:
    t0 = time.perf_counter()
    for c in cases:
        baseline(c.earliest, c.zones)
    base_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    deferred = refused = 0
    for c in cases:
        result = next_send_time(
            c.earliest, c.zones, c.channel, c.rules, country=c.country, region=c.region, history=c.history
        )
        if result.send_at is None:
            refused += 1
        elif result.reasons:
            deferred += 1
    core_s = time.perf_counter() - t0

    n = len(cases)
    print(f"== {title}")
    print(f"   baseline (convert zones, one fixed window): {n / base_s:12,.0f} cases/s  ({base_s:.2f} s)")
    print(f"   next_send_time (full rules):                {n / core_s:12,.0f} cases/s  ({core_s:.2f} s)")
    print(
        f"   ratio: {core_s / base_s:.2f}x the baseline's time (target <= 3x); "
        f"deferred {deferred}, nothing allowed within the horizon {refused}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
