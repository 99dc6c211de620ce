"""Domain values of the timing core: what a policy says about contact times, what was sent, what to do.

All values are frozen. Local times (``TimeRange``, ``WeeklyHours``) are wall-clock times in the customer's
zone; instants (``SentRecord.at``, ``Scheduled.send_at``) are aware datetimes, reported in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

_T = TypeVar("_T")

#: What may defer a message, in the order ``Scheduled.reasons`` lists them.
REASONS: tuple[str, ...] = (
    "legal_window",
    "quiet_hours",
    "business_hours",
    "holiday",
    "weekend",
    "blackout",
    "cadence",
)

#: Sources of a timezone guess, best first.
TIMEZONE_SOURCES: tuple[str, ...] = ("explicit", "address", "postal", "phone", "country", "unknown")


def _parse_time(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    h, m = int(hours), int(minutes or 0)
    if h == 24 and m == 0:
        return time(0)
    return time(h, m)


@dataclass(frozen=True)
class TimeRange:
    """Local wall-clock times ``[start, end)`` on one date.

    ``start > end`` wraps midnight: on a given date it covers ``[00:00, end)`` and ``[start, 24:00)``, so a
    daily 21:00-08:00 quiet range means every night. ``start == end`` covers the whole day. ``end`` of 00:00
    means midnight (end of day).
    """

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """``"21:00-08:00"`` -> TimeRange(21:00, 08:00). ``24:00`` is accepted as midnight."""
        left, sep, right = text.partition("-")
        if not sep:
            raise ValueError(f"time range must look like HH:MM-HH:MM, got {text!r}")
        return cls(_parse_time(left), _parse_time(right))

    def seconds(self) -> tuple[tuple[float, float], ...]:
        """The range as seconds since local midnight, split at midnight: ``((s, e), ...)`` with s < e."""
        s = self.start.hour * 3600 + self.start.minute * 60 + self.start.second + self.start.microsecond / 1e6
        e = self.end.hour * 3600 + self.end.minute * 60 + self.end.second + self.end.microsecond / 1e6
        if s == e:
            return ((0.0, 86400.0),)
        if e == 0.0:
            return ((s, 86400.0),)
        if s < e:
            return ((s, e),)
        return ((0.0, e), (s, 86400.0))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class WeeklyHours:
    """Open ranges per weekday (index 0 = Monday .. 6 = Sunday). A day with no ranges is closed."""

    days: tuple[tuple[TimeRange, ...], ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("WeeklyHours needs exactly 7 days (Monday first)")

    @classmethod
    def on(cls, ranges: Iterable[TimeRange | str], weekdays: Iterable[int] = range(7)) -> WeeklyHours:
        """The same ranges on the given weekdays (0 = Monday), closed on the others."""
        parsed = tuple(r if isinstance(r, TimeRange) else TimeRange.parse(r) for r in ranges)
        chosen = set(weekdays)
        return cls(tuple(parsed if d in chosen else () for d in range(7)))

    @classmethod
    def weekdays(cls, *ranges: TimeRange | str) -> WeeklyHours:
        """Monday to Friday."""
        return cls.on(ranges, range(5))

    @classmethod
    def every_day(cls, *ranges: TimeRange | str) -> WeeklyHours:
        return cls.on(ranges, range(7))


@dataclass(frozen=True)
class CadenceCaps:
    """Caps over rolling windows, counted across all channels unless the name says otherwise.

    ``max_per_day`` counts messages in any 24 h, ``max_per_week`` in any 7 days; ``min_gap`` is the least
    time between two messages; ``max_per_channel_per_day`` counts messages of the same channel in any 24 h.
    ``None`` means no cap.
    """

    max_per_day: int | None = None
    max_per_week: int | None = None
    min_gap: timedelta | None = None
    max_per_channel_per_day: int | None = None


def _freeze_region_map(
    value: Mapping[str, Iterable[TimeRange]],
) -> Mapping[str, tuple[TimeRange, ...]]:
    return MappingProxyType({k.upper(): tuple(v) for k, v in value.items()})


@dataclass(frozen=True)
class ContactRules:
    """What a policy and the settings say about when to contact a customer. Everything has a default.

    ``quiet_hours_by_region`` and ``business_hours_by_region`` are looked up by ``"CC-SUB"`` (e.g.
    ``"US-FL"``, ``"DE-BY"``), then ``"CC"``, then fall back to ``quiet_hours`` / ``business_hours``.
    ``override_business_hours`` / ``override_weekends`` are the urgent override: they lift the policy's
    business hours / weekend skipping, never the legal windows, legal caps, quiet hours or holidays.
    """

    business_hours: WeeklyHours | None = None
    quiet_hours: tuple[TimeRange, ...] = ()
    quiet_hours_by_region: Mapping[str, tuple[TimeRange, ...]] = field(default_factory=dict)
    skip_holidays: bool = False
    skip_weekends: bool = False
    blackout_dates: frozenset[date] = frozenset()
    cadence: CadenceCaps = CadenceCaps()
    override_business_hours: bool = False
    override_weekends: bool = False
    business_hours_by_region: Mapping[str, WeeklyHours | None] = field(default_factory=dict)
    _cached_key: tuple[Any, ...] = field(init=False, repr=False, compare=False, default=())
    _cached_hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quiet_hours", tuple(self.quiet_hours))
        object.__setattr__(self, "quiet_hours_by_region", _freeze_region_map(self.quiet_hours_by_region))
        object.__setattr__(
            self,
            "business_hours_by_region",
            MappingProxyType({k.upper(): v for k, v in self.business_hours_by_region.items()}),
        )
        object.__setattr__(self, "blackout_dates", frozenset(self.blackout_dates))
        # Rules are compared and hashed on every scheduling call (as cache keys): do the work once.
        key = self._key()
        object.__setattr__(self, "_cached_key", key)
        object.__setattr__(self, "_cached_hash", hash(key))

    @classmethod
    def default(cls) -> ContactRules:
        """Recoup's shipped defaults (shared/reference/channels-and-compliance.md section 4.2): no message
        21:00-08:00, public holidays skipped, at most 1 per channel and 3 across channels in any 24 h, 7 in
        any 7 days. No business-hours constraint and weekends allowed (the legal windows still apply)."""
        return cls(
            business_hours=None,
            quiet_hours=(TimeRange(time(21), time(8)),),
            skip_holidays=True,
            skip_weekends=False,
            cadence=CadenceCaps(max_per_day=3, max_per_week=7, max_per_channel_per_day=1),
        )

    def quiet_hours_for(self, country: str | None, region: str | None) -> tuple[TimeRange, ...]:
        return _by_region(self.quiet_hours_by_region, country, region, self.quiet_hours)

    def business_hours_for(self, country: str | None, region: str | None) -> WeeklyHours | None:
        return _by_region(self.business_hours_by_region, country, region, self.business_hours)

    def _key(self) -> tuple[Any, ...]:
        return (
            self.business_hours,
            self.quiet_hours,
            tuple(sorted(self.quiet_hours_by_region.items())),
            self.skip_holidays,
            self.skip_weekends,
            self.blackout_dates,
            self.cadence,
            self.override_business_hours,
            self.override_weekends,
            tuple(sorted(self.business_hours_by_region.items(), key=lambda kv: kv[0])),
        )

    def __hash__(self) -> int:
        return self._cached_hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContactRules):
            return NotImplemented
        return self is other or self._cached_key == other._cached_key


def _by_region(table: Mapping[str, _T], country: str | None, region: str | None, default: _T) -> _T:
    if country:
        cc = country.upper()
        if region:
            sub = region.upper().removeprefix(cc + "-")
            hit = table.get(f"{cc}-{sub}")
            if hit is not None:
                return hit
        hit = table.get(cc)
        if hit is not None:
            return hit
    return default


@dataclass(frozen=True)
class SentRecord:
    """A message sent (or already scheduled) to the customer, on any channel."""

    at: datetime
    channel: str


@dataclass(frozen=True)
class ContactHistory:
    sent: tuple[SentRecord, ...] = ()


@dataclass(frozen=True)
class Scheduled:
    """When to send. ``send_at`` is aware UTC, or ``None`` when nothing is allowed (``note`` says why).
    ``reasons`` lists what held the message back between ``earliest`` and ``send_at`` (see ``REASONS``)."""

    send_at: datetime | None
    reasons: tuple[str, ...]
    note: str | None = None


@dataclass(frozen=True)
class TimezoneGuess:
    """Where the customer probably is. ``zones`` are IANA names; a message may go only when its window is
    open in every one. ``too_many`` means the candidates span too many UTC offsets to intersect usefully:
    ``zones`` then lists them for the record, and ``next_send_time`` refuses them."""

    zones: tuple[str, ...]
    source: str
    confidence: float
    too_many: bool = False
    note: str | None = None

    @property
    def usable(self) -> bool:
        return bool(self.zones) and not self.too_many
