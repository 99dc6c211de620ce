"""Window tables at DST edges, and the cadence interval arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules.timing import ContactRules, TimeRange, WeeklyHours, next_send_time
from rules.timing.cadence import blocked_intervals, merge_open, next_free
from rules.timing.windows import offset_segments, zone_table
from rules.timing.zones import zone


def table(business: str):
    # No legal rules here (an empty tuple), so the DST edges of the business window itself are visible.
    return zone_table(
        "America/New_York", "US", None, (), (), WeeklyHours.every_day(business), False, False, frozenset()
    )


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_spring_forward_gap_opens_at_the_transition() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC). A window 02:30-03:30 local opens at 03:00 EDT.
    t = table("02:30-03:30")
    assert t.next_open(ts(2026, 3, 8, 5, 0), ts(2026, 3, 9)) == ts(2026, 3, 8, 7, 0)


def test_fall_back_overlap_opens_twice() -> None:
    # 2026-11-01: 01:00-02:00 local happens twice (EDT, UTC-4, then EST, UTC-5).
    t = table("01:30-01:45")
    assert t.next_open(ts(2026, 11, 1, 0, 0), ts(2026, 11, 2)) == ts(2026, 11, 1, 5, 30)
    assert t.next_open(ts(2026, 11, 1, 5, 50), ts(2026, 11, 2)) == ts(2026, 11, 1, 6, 30)
    assert t.next_open(ts(2026, 11, 1, 6, 50), ts(2026, 11, 3)) == ts(2026, 11, 2, 6, 30)


def test_offset_segments_split_at_transitions() -> None:
    tz = zone("Europe/Berlin")
    assert tz is not None
    segs = offset_segments(tz, int(ts(2026, 3, 28)), int(ts(2026, 3, 31)))
    assert segs == (
        (int(ts(2026, 3, 28)), int(ts(2026, 3, 29, 1)), 3600),
        (int(ts(2026, 3, 29, 1)), int(ts(2026, 3, 31)), 7200),
    )


def test_santiago_dst_at_midnight() -> None:
    # Chile ends DST on the first Sunday of April at 00:00 local (03:00 UTC): Saturday 23:00-24:00 repeats.
    at = datetime(2026, 4, 5, 2, 30, tzinfo=UTC)  # Saturday 23:30 CLST
    result = next_send_time(at, ["America/Santiago"], "email", ContactRules(), country="CL")
    assert result.send_at == datetime(2026, 4, 5, 13, 0, tzinfo=UTC)  # Sunday 09:00 CLT (UTC-4)


def test_lord_howe_half_hour_dst() -> None:
    rules = ContactRules(quiet_hours=(TimeRange.parse("20:00-09:30"),))
    at = datetime(2026, 4, 4, 20, 0, tzinfo=UTC)  # Sunday 07:00 LHDT (+11); DST ends 02:00 -> 01:30
    result = next_send_time(at, ["Australia/Lord_Howe"], "email", rules, country="AU")
    assert result.send_at == datetime(2026, 4, 4, 23, 0, tzinfo=UTC)  # 09:30 LHST (+10:30)


def test_cadence_blocked_intervals() -> None:
    assert blocked_intervals([0.0, 10.0, 20.0], 2, 100.0) == [(-90.0, 100.0), (-80.0, 110.0)]
    assert blocked_intervals([0.0, 200.0], 2, 100.0) == []
    assert merge_open([(0.0, 5.0), (5.0, 9.0), (3.0, 4.0)]) == [(0.0, 5.0), (5.0, 9.0)]
    blocked = merge_open([(0.0, 5.0), (5.0, 9.0)])
    assert next_free(blocked, 2.0) == 5.0  # the shared end point is allowed
    assert next_free(blocked, 5.5) == 9.0
    assert next_free(blocked, 0.0) == 0.0
    assert next_free(blocked, 12.0) == 12.0


def test_history_in_other_zones_and_far_past_is_ignored() -> None:
    from rules.timing import CadenceCaps, ContactHistory, SentRecord

    at = datetime(2026, 6, 2, 14, tzinfo=UTC)
    old = ContactHistory((SentRecord(at - timedelta(days=8), "sms"),) * 5)
    rules = ContactRules(cadence=CadenceCaps(max_per_day=1, max_per_week=1))
    assert next_send_time(at, ["Europe/London"], "sms", rules, history=old).send_at == at
