"""Per-zone tables of when contact is allowed, built one day at a time and cached.

Instants are float seconds since the Unix epoch (UTC). A zone's table maps a UTC day number
``k = floor(t / 86400)`` to the segments ``(start, end, mask)`` covering ``[k*86400, (k+1)*86400)``, where
``mask`` holds a bit for every constraint that closes that stretch (0 = open). The scheduler then steps
from one open interval to the next instead of scanning minutes.

Local wall-clock rules become instants through the zone's UTC-offset segments: within a segment of constant
offset ``o`` the wall time is ``t + o``, so a local range maps to one interval per segment. That handles DST
gaps (a 02:30 that does not exist simply maps to nothing) and overlaps (a 01:30 that happens twice maps to
two intervals) exactly the way ``datetime.astimezone`` sees them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rules.timing.calendar import holiday_dates, weekend_days
from rules.timing.legal import LegalRule
from rules.timing.types import REASONS, TimeRange, WeeklyHours

LEGAL, QUIET, BUSINESS, HOLIDAY, WEEKEND, BLACKOUT, CADENCE = (1 << i for i in range(7))
_BITS = dict(zip(REASONS, (LEGAL, QUIET, BUSINESS, HOLIDAY, WEEKEND, BLACKOUT, CADENCE), strict=True))

DAY = 86400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Offsets stay within (-15 h, +15 h); sampling every 6 h finds every transition at least 6 h from the next.
_BEFORE, _AFTER, _STEP = 15 * 3600, 15 * 3600, 6 * 3600

Segment = tuple[float, float, int]
Interval = tuple[float, float]


def reasons_of(mask: int) -> tuple[str, ...]:
    return tuple(name for name, bit in _BITS.items() if mask & bit)


def _ranges(ranges: Iterable[TimeRange]) -> tuple[Interval, ...]:
    return tuple(part for r in ranges for part in r.seconds())


def _inside(x: float, ranges: Sequence[Interval]) -> bool:
    return any(s <= x < e for s, e in ranges)


@functools.lru_cache(maxsize=4096)
def wall_profile(
    legal: tuple[tuple[Interval, ...], ...],
    quiet: tuple[Interval, ...],
    business: tuple[Interval, ...] | None,
) -> tuple[Segment, ...]:
    """One local day as segments of seconds since midnight, ``(start, end, mask)``, covering [0, 86400).

    ``legal`` holds the open ranges of each binding legal rule (all must be open); ``quiet`` the quiet
    ranges; ``business`` the business ranges, or None for no business-hours constraint.
    """
    cuts = {0.0, float(DAY)}
    for group in (*legal, quiet, business or ()):
        for s, e in group:
            cuts.update((s, e))
    points = sorted(cuts)
    out: list[Segment] = []
    for s, e in zip(points, points[1:], strict=False):
        mid = (s + e) / 2
        mask = 0
        if not all(_inside(mid, ranges) for ranges in legal):
            mask |= LEGAL
        if _inside(mid, quiet):
            mask |= QUIET
        if business is not None and not _inside(mid, business):
            mask |= BUSINESS
        if out and out[-1][2] == mask:
            out[-1] = (out[-1][0], e, mask)
        else:
            out.append((s, e, mask))
    return tuple(out)


def _offset(tz: ZoneInfo, t: int) -> int:
    off = datetime.fromtimestamp(t, tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


_YEAR_START = {y: int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in range(1970, 2200)}


@functools.lru_cache(maxsize=16384)
def _year_transitions(tz: ZoneInfo, year: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(offset at the start of the UTC year, ((transition instant, offset from then on), ...))."""
    t0, t1 = _YEAR_START[year], _YEAR_START[year + 1]
    samples = list(range(t0, t1, _STEP)) + [t1]
    offsets = [_offset(tz, t) for t in samples]
    found: list[tuple[int, int]] = []
    for i in range(len(samples) - 1):
        if offsets[i] == offsets[i + 1]:
            continue
        lo, hi = samples[i], samples[i + 1]  # offset(lo) = old, offset(hi) = new
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(tz, mid) == offsets[i]:
                lo = mid
            else:
                hi = mid
        found.append((hi, offsets[i + 1]))
    return offsets[0], tuple(found)


def _year_of(t: int) -> int:
    return datetime.fromtimestamp(t, UTC).year


def offset_segments(tz: ZoneInfo, t0: int, t1: int) -> tuple[tuple[int, int, int], ...]:
    """``(start, end, utc_offset_seconds)`` covering [t0, t1), split at the zone's transitions."""
    y0, y1 = _year_of(t0), _year_of(t1)
    current, _ = _year_transitions(tz, y0)
    changes: list[tuple[int, int]] = []
    for year in range(y0, y1 + 1):
        for at, off in _year_transitions(tz, year)[1]:
            if at <= t0:
                current = off
            elif at < t1:
                changes.append((at, off))
    segs: list[tuple[int, int, int]] = []
    start = t0
    for at, off in changes:
        segs.append((start, at, current))
        start, current = at, off
    segs.append((start, t1, current))
    return tuple(segs)


class Table:
    """Segments per UTC day, built on demand and cached, and the searches over them."""

    def __init__(self) -> None:
        self._days: dict[int, tuple[Segment, ...]] = {}
        self._opens: dict[int, tuple[Interval, ...]] = {}
        self._answers: dict[tuple[int, int], tuple[float, int] | None] = {}

    def _build(self, k: int) -> tuple[Segment, ...]:
        raise NotImplementedError

    def segments(self, k: int) -> tuple[Segment, ...]:
        """Segments covering UTC day ``k``, in time order, adjacent ones with different masks."""
        hit = self._days.get(k)
        if hit is None:
            if len(self._days) > 50_000:
                self._days.clear()
                self._opens.clear()
                self._answers.clear()
            hit = self._days[k] = self._build(k)
        return hit

    def opens(self, k: int) -> tuple[Interval, ...]:
        """Open intervals of UTC day ``k``."""
        hit = self._opens.get(k)
        if hit is None:
            hit = self._opens[k] = tuple((s, e) for s, e, m in self.segments(k) if m == 0)
        return hit

    def next_open(self, t: float, limit: float) -> float | None:
        """The first instant >= t when this table is open, or None if none up to ``limit``."""
        k = int(t // DAY)
        last = int(limit // DAY)
        opens = self._opens
        while k <= last:
            day = opens.get(k)
            if day is None:
                day = self.opens(k)
            for s, e in day:
                if e > t:
                    return s if s > t else t
            k += 1
        return None

    def mask_at(self, t: float) -> int:
        """The constraints that close instant ``t`` (0 = open)."""
        for s, e, m in self.segments(int(t // DAY)):
            if s <= t < e:
                return m
        return 0

    def next_clear(self, t: float, bits: int, limit: float) -> float | None:
        """The first instant >= t at which none of ``bits`` is closed, or None if none up to ``limit``."""
        k = int(t // DAY)
        while k <= int(limit // DAY):
            for s, e, m in self.segments(k):
                if e > t and not m & bits:
                    return s if s > t else t
            k += 1
        return None

    def deferred_by(self, a: float, b: float, blocked: Sequence[Interval] = ()) -> int:
        """What held a message back from ``a`` to ``b``.

        Starting at ``a``, take every constraint closed there, move to the first instant where none of
        *those* is closed, and repeat until ``b``. So a night that a cadence wait happens to span is not
        blamed, but a holiday and the night after it both are.
        ``blocked`` are the cadence caps' blocked (open) intervals."""
        reasons = 0
        p = a
        while p < b:
            closed = self.mask_at(p)
            if any(s < p < e for s, e in blocked):
                closed |= CADENCE
            if not closed:
                break
            reasons |= closed
            t: float | None = p
            while t is not None and t < b:
                start = t
                t = self.next_clear(t, closed, b)
                if t is not None and closed & CADENCE:
                    t = _next_free(blocked, t)
                if t == start:
                    break
            if t is None or t >= b:
                break
            p = t
        return reasons

    def answer(self, k: int, i: int) -> tuple[float, int] | None:
        """For any instant inside closed segment ``i`` of UTC day ``k`` (ignoring cadence): the first open
        instant and what deferred it, or None if nothing opens within a year. Cached: the answer is the same
        for every instant of the segment."""
        key = (k, i)
        if key in self._answers:
            return self._answers[key]
        seg_start, seg_end, _ = self.segments(k)[i]
        found = self.next_open(seg_end, seg_end + _LOOKAHEAD)
        result = None if found is None else (found, self.deferred_by(seg_start, found))
        self._answers[key] = result
        return result


_LOOKAHEAD = 366 * DAY


def _next_free(blocked: Sequence[Interval], t: float) -> float:
    for s, e in blocked:
        if s < t < e:
            return e
        if s >= t:
            break
    return t


class ZoneTable(Table):
    """When contact is allowed in one zone under one set of constraints. Build with :func:`zone_table`."""

    def __init__(
        self,
        name: str,
        tz: ZoneInfo,
        country: str | None,
        subdivision: str | None,
        legal: tuple[LegalRule, ...],
        quiet: tuple[TimeRange, ...],
        business: WeeklyHours | None,
        skip_holidays: bool,
        skip_weekends: bool,
        blackouts: frozenset[date],
    ) -> None:
        super().__init__()
        self.name, self.tz, self.country, self.subdivision = name, tz, country, subdivision
        self.legal = legal
        self.legal_holidays = any(rule.closed_on_public_holidays for rule in legal)
        quiet_s = _ranges(quiet)
        self.profiles = tuple(
            wall_profile(
                tuple(_ranges(rule.hours.days[wd]) for rule in legal),
                quiet_s,
                _ranges(business.days[wd]) if business is not None else None,
            )
            for wd in range(7)
        )
        self.skip_holidays, self.skip_weekends, self.blackouts = skip_holidays, skip_weekends, blackouts
        self._local: dict[int, list[Segment]] = {}

    def day_mask(self, day: date) -> int:
        """Constraints that close the whole local date."""
        mask = 0
        if self.skip_holidays or self.legal_holidays:
            if day in holiday_dates(self.country, self.subdivision, day.year):
                if self.skip_holidays:
                    mask |= HOLIDAY
                if self.legal_holidays:
                    mask |= LEGAL
        if self.skip_weekends and day.weekday() in weekend_days(self.country, day.year):
            mask |= WEEKEND
        if day in self.blackouts:
            mask |= BLACKOUT
        return mask

    def local_date_segments(self, ordinal: int) -> list[Segment]:
        """Every instant whose wall-clock date (in this zone) is ``ordinal``, as UTC segments with masks."""
        hit = self._local.get(ordinal)
        if hit is None:
            if len(self._local) > 50_000:
                self._local.clear()
            hit = self._local[ordinal] = self._local_date_segments(ordinal)
        return hit

    def _local_date_segments(self, ordinal: int) -> list[Segment]:
        day = date.fromordinal(ordinal)
        extra = self.day_mask(day)
        profile = self.profiles[day.weekday()]
        w0 = (ordinal - _EPOCH_ORDINAL) * DAY
        out: list[Segment] = []
        for a, b, off in offset_segments(self.tz, w0 - _BEFORE, w0 + DAY + _AFTER):
            lo, hi = max(a, w0 - off), min(b, w0 + DAY - off)
            if lo >= hi:
                continue
            base = w0 - off
            for s, e, m in profile:
                start, end = max(lo, base + s), min(hi, base + e)
                if start < end:
                    out.append((start, end, m | extra))
        return out

    def _build(self, k: int) -> tuple[Segment, ...]:
        k0, k1 = k * DAY, (k + 1) * DAY
        epoch_day = k + _EPOCH_ORDINAL
        parts: list[Segment] = []
        for ordinal in (epoch_day - 1, epoch_day, epoch_day + 1):
            for s, e, m in self.local_date_segments(ordinal):
                s, e = max(s, k0), min(e, k1)
                if s < e:
                    parts.append((s, e, m))
        parts.sort()
        return _merge_adjacent(parts)


class JointTable(Table):
    """Several zones at once: an instant is open only when it is open in every zone; masks are OR-ed."""

    def __init__(self, children: tuple[ZoneTable, ...]) -> None:
        super().__init__()
        self.children = children

    def _build(self, k: int) -> tuple[Segment, ...]:
        days = [child.segments(k) for child in self.children]
        cuts = sorted({s for day in days for s, _, _ in day} | {float((k + 1) * DAY)})
        parts: list[Segment] = []
        idx = [0] * len(days)
        for s, e in zip(cuts, cuts[1:], strict=False):
            mask = 0
            for j, day in enumerate(days):
                while day[idx[j]][1] <= s:
                    idx[j] += 1
                mask |= day[idx[j]][2]
            parts.append((s, e, mask))
        return _merge_adjacent(parts)


def _merge_adjacent(parts: list[Segment]) -> tuple[Segment, ...]:
    merged: list[Segment] = []
    for seg in parts:
        if merged and merged[-1][2] == seg[2] and merged[-1][1] == seg[0]:
            merged[-1] = (merged[-1][0], seg[1], seg[2])
        else:
            merged.append(seg)
    return tuple(merged)


@functools.lru_cache(maxsize=4096)
def joint_table(children: tuple[ZoneTable, ...]) -> Table:
    return children[0] if len(children) == 1 else JointTable(children)


@functools.lru_cache(maxsize=8192)
def zone_table(
    name: str,
    country: str | None,
    subdivision: str | None,
    legal: tuple[LegalRule, ...],
    quiet: tuple[TimeRange, ...],
    business: WeeklyHours | None,
    skip_holidays: bool,
    skip_weekends: bool,
    blackouts: frozenset[date],
) -> ZoneTable:
    return ZoneTable(
        name,
        ZoneInfo(name),
        country,
        subdivision,
        legal,
        quiet,
        business,
        skip_holidays,
        skip_weekends,
        blackouts,
    )


def to_datetime(t: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t)
