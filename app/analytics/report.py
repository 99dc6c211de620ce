"""What the dashboard shows, read from the rollups only (never the raw rows): KPIs, recovery by the week cases
opened, breakdowns by a dimension, the funnel per channel. Money is per currency: amounts in different currencies
are never added together.

Definitions (issue 17): a case is one failed payment; recovered = paid through Recoup; recovered elsewhere = marked
paid outside it (shown apart, counted as recovered in neither rate); the recovery rate is recovered / failed, in
count and in amount, over the cases that opened in the period, still-open cases kept in the denominator (and shown
as their own band).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from app.analytics import cubes
from app.extensions import db
from app.models.analytics import (
    ALL,
    CASE_DIMENSIONS,
    CASE_PAIRS,
    FILTER_DIMENSIONS,
    HOURS,
    MESSAGE_DIMENSIONS,
    MESSAGE_PAIRS,
    TIME_TO_RECOVER,
    CaseDay,
    CasePair,
    CaseRollup,
    CaseWeek,
    MessageDay,
    MessageHours,
    MessageHourWeeks,
    MessagePair,
    MessageRollup,
    MessageWeek,
    hour_column,
    pair_name,
)

_CASES = CaseRollup.__table__
_MESSAGES = MessageRollup.__table__
_CASE_DAYS = CaseDay.__table__
_MESSAGE_DAYS = MessageDay.__table__
_CASE_PAIRS = CasePair.__table__
_MESSAGE_PAIRS = MessagePair.__table__
_HOURS = MessageHours.__table__
_CASE_WEEKS = CaseWeek.__table__
_MESSAGE_WEEKS = MessageWeek.__table__
_HOUR_WEEKS = MessageHourWeeks.__table__
#: the dimensions both rollups share: a filter on one of them narrows cases and messages alike
SHARED = tuple(d for d in CASE_DIMENSIONS if d in MESSAGE_DIMENSIONS)
#: read the daily cubes when a question allows it (tests turn it off to compare both ways of answering)
USE_CUBES = True


@dataclass(frozen=True)
class Filters:
    """The period (dates, inclusive, UTC) and any dimension values to keep (``{"currency": "EUR"}``); a filter on
    a dimension only messages have (``channel``) narrows the messages, not the cases."""

    start: date | None = None
    end: date | None = None
    where: dict[str, Any] = field(default_factory=dict)

    def apply(self, table: sa.Table, query: sa.Select[Any]) -> sa.Select[Any]:
        if self.start is not None:
            query = query.where(table.c.bucket >= datetime.combine(self.start, time(), UTC))
        if self.end is not None:
            query = query.where(table.c.bucket < datetime.combine(self.end + timedelta(days=1), time(), UTC))
        for name, value in self.where.items():
            if name in table.c:
                query = query.where(table.c[name].is_(None) if value is None else table.c[name] == value)
        return query


#: what a question can be grouped by, besides the dimensions: the day (UTC) and the local [weekday, hour] of a send
DAY, SLOT = "day", "slot"


#: the local-time dimensions the hour grid answers (app.models.analytics.MessageHours)
_LOCAL = {SLOT, "local_hour", "weekday"}


def source(hourly: sa.Table, groups: tuple[str, ...], filters: Filters) -> tuple[str, Any]:
    """Where a question is answered: ``("days", dimension)`` (a one-dimension cube, ``*`` for none),
    ``("pairs", (first, other))``, ``("grid", dimension)`` (the hour grid, for the local hour, weekday or slot of
    messages, with at most one filter dimension) or ``("hours", None)`` (the hourly rollups: any combination)."""
    messages = hourly is _MESSAGES
    head = {"currency", *(("channel",) if messages else ())}
    wanted = {name for name in filters.where if name in hourly.c and name not in head}
    wanted |= {g for g in groups if g not in head and g != DAY}
    if not USE_CUBES:
        return "hours", None
    rest = wanted - _LOCAL
    if messages and wanted & {SLOT, "local_hour"}:
        if len(rest) <= 1 and rest <= set(FILTER_DIMENSIONS):
            return "grid", next(iter(rest), ALL)
        return "hours", None
    if len(wanted) <= 1:
        return "days", next(iter(wanted), ALL)
    pair = _PAIRS[hourly.name].get(frozenset(wanted))
    return ("pairs", pair) if pair is not None else ("hours", None)


_PAIRS = {_CASES.name: {frozenset(p): p for p in CASE_PAIRS}, _MESSAGES.name: {frozenset(p): p for p in MESSAGE_PAIRS}}


def _sum(hourly: sa.Table, groups: tuple[str, ...], measures: tuple[str, ...],
         filters: Filters) -> list[tuple[Any, ...]]:
    """``(*group values, *measure sums)`` of the cases (``hourly`` = the case rollup) or messages, grouped by
    ``groups`` (dimension names, :data:`DAY` or :data:`SLOT`), filtered by ``filters``; groups whose sums are all
    zero (what a fact that moved elsewhere leaves behind) are left out. Read from a daily cube when one holds the
    question's dimensions (:func:`source`), from the hourly rollup otherwise. Every way gives the same numbers."""
    where, what = source(hourly, groups, filters)
    if where == "days":
        daily, weekly = (_CASE_DAYS, _CASE_WEEKS) if hourly is _CASES else (_MESSAGE_DAYS, _MESSAGE_WEEKS)
        rows = _by_spans(lambda table, part: _from_cube(table, what, groups, measures, part), daily, weekly,
                         groups, filters)
    elif where == "pairs":
        rows = _from_pairs(_CASE_PAIRS if hourly is _CASES else _MESSAGE_PAIRS, what, groups, measures, filters)
    elif where == "grid":
        rows = _by_spans(lambda table, part: _from_grid(table, what, groups, measures, part), _HOURS,
                         _HOUR_WEEKS, groups, filters)
    else:
        rows = _from_hours(hourly, groups, measures, filters)
    return [row for row in rows if any(row[len(groups):])]


def spans(filters: Filters) -> list[tuple[bool, Filters]]:
    """The period cut into its whole weeks (Monday to Sunday, UTC), read from a weekly cube, and the days before
    and after them, read from the daily cube: ``(weekly, the part's filters)``. A weekly part's ``start`` and
    ``end`` are the Mondays of its first and last weeks (a weekly row's ``day``). A period without a whole week is
    read by day; an open end is whole weeks as far as there are any."""
    start, end = filters.start, filters.end
    first = None if start is None else start + timedelta(days=-start.weekday() % 7)  # a Monday, on or after start
    last = None if end is None else end - timedelta(days=(end.weekday() + 1) % 7)  # a Sunday, on or before end
    if first is not None and last is not None and first > last:
        return [(False, filters)]
    parts = []
    if start is not None and first is not None and first > start:
        parts.append((False, replace(filters, end=first - timedelta(days=1))))
    parts.append((True, replace(filters, start=first, end=None if last is None else last - timedelta(days=6))))
    if end is not None and last is not None and last < end:
        parts.append((False, replace(filters, start=last + timedelta(days=1))))
    return parts


def _by_spans(read: Any, daily: sa.Table, weekly: sa.Table, groups: tuple[str, ...],
              filters: Filters) -> list[tuple[Any, ...]]:
    """``read(table, filters)`` of a cube's whole weeks and edge days (:func:`spans`), the parts' rows summed by
    their groups; by day from the daily cube alone when the question is grouped by day."""
    if DAY in groups:
        return read(daily, filters)  # type: ignore[no-any-return]
    summed: dict[tuple[Any, ...], list[int]] = {}
    for weekly_part, part in spans(filters):
        for row in read(weekly if weekly_part else daily, part):
            cubes.accumulate(summed, tuple(row[:len(groups)]), row[len(groups):])
    return [(*key, *values) for key, values in summed.items()]


def _head_value(group: str, value: Any) -> Any:
    """A group's value as read from a cube: a missing currency or channel is kept as "", a dimension's as JSON."""
    if group in ("currency", "channel"):
        return value or None
    if group == DAY:
        return value
    decoded = cubes.decode(value)
    return tuple(decoded) if isinstance(decoded, list) else decoded


def _period(daily: sa.Table, query: sa.Select[Any], filters: Filters) -> sa.Select[Any]:
    if filters.start is not None:
        query = query.where(daily.c.day >= filters.start)
    if filters.end is not None:
        query = query.where(daily.c.day <= filters.end)
    for name in ("currency", "channel"):
        if name in filters.where and name in daily.c:
            query = query.where(daily.c[name] == (filters.where[name] or ""))
    return query


def _from_cube(daily: sa.Table, dim: str, groups: tuple[str, ...], measures: tuple[str, ...],
               filters: Filters) -> list[tuple[Any, ...]]:
    columns = [daily.c.day if g == DAY else daily.c[g] if g in daily.c else daily.c.value for g in groups]
    query = _period(daily, sa.select(*columns, *(sa.func.sum(daily.c[m]) for m in measures))
                    .where(daily.c.dim == dim), filters)
    if dim in filters.where:
        query = query.where(daily.c.value == cubes.encode(filters.where[dim]))
    return [(*(_head_value(g, v) for g, v in zip(groups, row, strict=False)),
             *(int(v or 0) for v in row[len(groups):])) for row in db.session.execute(query.group_by(*columns))]


def _from_pairs(daily: sa.Table, pair: tuple[str, str], groups: tuple[str, ...], measures: tuple[str, ...],
                filters: Filters) -> list[tuple[Any, ...]]:
    first, other = pair
    slots = {first: daily.c.first, other: daily.c.other}
    columns = [daily.c.day if g == DAY else slots[g] if g in slots else daily.c[g] for g in groups]
    query = _period(daily, sa.select(*columns, *(sa.func.sum(daily.c[m]) for m in measures))
                    .where(daily.c.pair == pair_name(first, other)), filters)
    for name, column in slots.items():
        if name in filters.where:
            query = query.where(column == cubes.encode(filters.where[name]))
    return [(*(_head_value(g, v) for g, v in zip(groups, row, strict=False)),
             *(int(v or 0) for v in row[len(groups):])) for row in db.session.execute(query.group_by(*columns))]


def _from_grid(grid: sa.Table, dim: str, groups: tuple[str, ...], measures: tuple[str, ...],
               filters: Filters) -> list[tuple[Any, ...]]:
    """Read the hour grid (by day or by week): its rows summed in the database by day, currency, channel, weekday
    (and the filter dimension's value, when grouped), each hour's columns apart; then the hours folded into the
    groups here."""
    hours = list(HOURS)
    if "local_hour" in filters.where:
        wanted = filters.where["local_hour"]
        hours = [h for h in hours if h == wanted]
        if not hours:
            return []
    keys = []
    for g in groups:
        if g in ("currency", "channel"):
            keys.append(grid.c[g])
        elif g == DAY:
            keys.append(grid.c.day)
        elif g in (SLOT, "weekday"):
            keys.append(grid.c.weekday)
        elif g != "local_hour":
            keys.append(grid.c.value)  # the filter dimension, grouped by
    keys = list(dict.fromkeys(keys))
    sums = [sa.func.sum(grid.c[hour_column(m, h)]) for h in hours for m in measures]
    query = _period(grid, sa.select(*keys, *sums).where(grid.c.dim == dim), filters)
    if dim == ALL:  # the key's whole prefix, so the period is a range of the primary key
        query = query.where(grid.c.value == cubes.EVERYTHING)
    elif dim in filters.where:
        query = query.where(grid.c.value == cubes.encode(filters.where[dim]))
    if "weekday" in filters.where:
        query = query.where(grid.c.weekday == filters.where["weekday"]) if filters.where["weekday"] is not None \
            else query.where(sa.false())
    summed: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(measures))
    for row in db.session.execute(query.group_by(*keys) if keys else query):
        read = dict(zip(keys, row, strict=False))
        for i, hour in enumerate(hours):
            values = [int(v or 0) for v in row[len(keys) + i * len(measures):len(keys) + (i + 1) * len(measures)]]
            if not any(values):
                continue
            key = []
            for g in groups:
                if g == SLOT:
                    key.append((read[grid.c.weekday], hour))
                elif g == "local_hour":
                    key.append(hour)
                elif g == "weekday":
                    key.append(read[grid.c.weekday])
                elif g in ("currency", "channel", DAY):
                    key.append(_head_value(g, read[grid.c[g] if g != DAY else grid.c.day]))
                else:
                    key.append(_head_value(g, read[grid.c.value]))
            slot = summed[tuple(key)]
            for j, value in enumerate(values):
                slot[j] += value
    return [(*key, *values) for key, values in summed.items()]


def _from_hours(hourly: sa.Table, groups: tuple[str, ...], measures: tuple[str, ...],
                filters: Filters) -> list[tuple[Any, ...]]:
    columns: list[Any] = []
    for g in groups:
        columns += [hourly.c.bucket] if g == DAY else [hourly.c.weekday, hourly.c.local_hour] if g == SLOT \
            else [hourly.c[g]]
    query = filters.apply(hourly, sa.select(*columns, *(sa.func.sum(hourly.c[m]) for m in measures))
                          .group_by(*columns))
    summed: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(measures))
    for row in db.session.execute(query):
        values, i = [], 0
        for g in groups:
            if g == DAY:  # grouped by the hour in the database, by the day here: the same on MariaDB and SQLite
                bucket = row[i]
                values.append((bucket if bucket.tzinfo else bucket.replace(tzinfo=UTC)).astimezone(UTC).date())
                i += 1
            elif g == SLOT:
                values.append((row[i], row[i + 1]))
                i += 2
            else:
                values.append(row[i])
                i += 1
        slot = summed[tuple(values)]
        for j, value in enumerate(row[i:]):
            slot[j] += int(value or 0)
    return [(*key, *values) for key, values in summed.items()]


def _rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001")) if whole else None


@dataclass(frozen=True)
class Kpis:
    currency: str
    failed_n: int
    failed_minor: int
    recovered_n: int
    recovered_minor: int
    elsewhere_n: int
    elsewhere_minor: int
    open_n: int
    #: recovered through Recoup with no touch in the attribution window (in recovered_n too)
    organic_n: int = 0
    organic_minor: int = 0
    #: recoveries through Recoup by how long they took (app.models.analytics.TIME_TO_RECOVER)
    time_to_recover: tuple[int, ...] = ()

    @property
    def rate_count(self) -> Decimal | None:
        return _rate(self.recovered_n, self.failed_n)

    @property
    def rate_amount(self) -> Decimal | None:
        return _rate(self.recovered_minor, self.failed_minor)

    @property
    def median_hours(self) -> int | None:
        """The median recovery took at most this many hours (None: over 30 days, or nothing recovered)."""
        return _within(self.time_to_recover, Decimal("0.5"))

    @property
    def p90_hours(self) -> int | None:
        return _within(self.time_to_recover, Decimal("0.9"))


def _within(histogram: tuple[int, ...], share: Decimal) -> int | None:
    """The upper edge (hours) of the bucket holding the ``share`` quantile; None past the last edge or when empty."""
    total = sum(histogram)
    if not total:
        return None
    seen = 0
    for count, (_name, limit) in zip(histogram, TIME_TO_RECOVER, strict=True):
        seen += count
        if seen >= share * total:
            return limit
    return None


_TILE = ("failed_n", "failed_minor", "recovered_n", "recovered_minor", "elsewhere_n", "elsewhere_minor", "open_n",
         "organic_n", "organic_minor")


def kpis(filters: Filters) -> list[Kpis]:
    """The tiles, one set per currency (most failed first)."""
    names = (*_TILE, *(name for name, _ in TIME_TO_RECOVER))
    rows = [Kpis(c or "?", *values[:len(_TILE)], time_to_recover=tuple(values[len(_TILE):]))
            for c, *values in _sum(_CASES, ("currency",), names, filters)]
    return sorted(rows, key=lambda k: (-k.failed_n, k.currency))


@dataclass(frozen=True)
class _CaseCounts:
    """Cases counted together, in one currency: the measures a cohort and a breakdown row share."""

    currency: str
    failed_n: int
    recovered_n: int
    elsewhere_n: int
    open_n: int
    failed_minor: int
    recovered_minor: int

    @property
    def rate_count(self) -> Decimal | None:
        return _rate(self.recovered_n, self.failed_n)

    @property
    def rate_amount(self) -> Decimal | None:
        return _rate(self.recovered_minor, self.failed_minor)


#: the order of _CaseCounts' measures, as the queries below read them
_CASE_COUNTS = ("failed_n", "recovered_n", "elsewhere_n", "open_n", "failed_minor", "recovered_minor")


@dataclass(frozen=True)
class Cohort(_CaseCounts):
    """Cases that opened in one week (Monday, UTC), in one currency."""

    week: date

    @property
    def lost_n(self) -> int:
        """Closed without being paid (expired, cancelled)."""
        return self.failed_n - self.recovered_n - self.elsewhere_n - self.open_n


def cohorts(filters: Filters) -> list[Cohort]:
    """Recovery by the week the cases opened (grouped by the day in the database, by the week here)."""
    measures = _CASE_COUNTS
    weeks: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0] * len(measures))
    for day, currency, *values in _sum(_CASES, (DAY, "currency"), measures, filters):
        slot = weeks[(cubes.week_of(day), currency or "?")]
        for i, value in enumerate(values):
            slot[i] += int(value or 0)
    return [Cohort(currency, *values, week=week) for (week, currency), values in sorted(weeks.items())]


@dataclass(frozen=True)
class CaseBreakdown(_CaseCounts):
    value: Any


@dataclass(frozen=True)
class MessageBreakdown:
    value: Any
    currency: str
    sent_n: int
    delivered_n: int
    read_n: int
    clicked_n: int
    optout_n: int
    paid_n: int
    paid_minor: int
    #: recoveries these messages took part in (once per case and channel), last touch or not
    any_n: int = 0
    any_minor: int = 0

    @property
    def paid_rate(self) -> Decimal | None:
        """Recoveries credited to these messages per message sent."""
        return _rate(self.paid_n, self.sent_n)

    @property
    def optout_rate(self) -> Decimal | None:
        """Opt-outs (an unsubscribe, a STOP) held against these messages per message sent."""
        return _rate(self.optout_n, self.sent_n)


def breakdown(dimension: str, filters: Filters) -> list[CaseBreakdown] | list[MessageBreakdown]:
    """Totals by one dimension's values (and currency). A case dimension gives cases; a dimension only messages
    have (channel, template, variant, local hour, weekday) gives the messages' funnel."""
    if dimension in CASE_DIMENSIONS:
        measures: tuple[str, ...] = _CASE_COUNTS
        table, row = _CASES, CaseBreakdown
    elif dimension in MESSAGE_DIMENSIONS:
        measures = ("sent_n", "delivered_n", "read_n", "clicked_n", "optout_n", "paid_n", "paid_minor", "any_n",
                    "any_minor")
        table, row = _MESSAGES, MessageBreakdown  # type: ignore[assignment]
    else:
        raise ValueError(f"unknown dimension {dimension!r}; dimensions are "
                         f"{', '.join(sorted(set(CASE_DIMENSIONS) | set(MESSAGE_DIMENSIONS)))}")
    rows = [row(value=value, currency=currency or "?", **dict(zip(measures, values, strict=True)))
            for value, currency, *values in _sum(table, (dimension, "currency"), measures, filters)]
    return sorted(rows, key=lambda r: (-(r.failed_n if isinstance(r, CaseBreakdown) else r.sent_n),
                                       str(r.value), r.currency))  # type: ignore[return-value]


def funnel(filters: Filters) -> list[MessageBreakdown]:
    """Sent -> delivered -> read -> clicked -> paid, per channel."""
    return breakdown("channel", filters)  # type: ignore[return-value]


#: a best-times cell with fewer first touches than this is shown greyed out, never ranked
MIN_SAMPLE = 30


@dataclass(frozen=True)
class TimeCell:
    """First touches sent at one local hour of one weekday (0 = Monday), and how many of their cases Recoup
    recovered within 72 hours, with a 95 % Wilson interval."""

    weekday: int
    hour: int
    first_n: int
    won_n: int
    low: float | None
    high: float | None

    @property
    def rate(self) -> Decimal | None:
        return _rate(self.won_n, self.first_n)

    @property
    def thin(self) -> bool:
        return self.first_n < MIN_SAMPLE


def best_times(filters: Filters) -> list[TimeCell]:
    """Recovery within 72 h of the first touch, by the customer's local weekday and hour (filters: a channel, a
    segment, ...); the intervals are statsmodels' Wilson intervals."""
    from statsmodels.stats.proportion import proportion_confint

    counted = [(int(weekday), int(hour), first_n, won_n)
               for (weekday, hour), first_n, won_n in _sum(_MESSAGES, (SLOT,), ("first_n", "won72_n"), filters)
               if weekday is not None and hour is not None and first_n]
    if not counted:
        return []
    # one call for every cell (up to 168): statsmodels' per-call overhead cost more than the query
    lows, highs = proportion_confint([c[3] for c in counted], [c[2] for c in counted], alpha=0.05, method="wilson")
    cells = [TimeCell(weekday, hour, first_n, won_n, float(low), float(high))
             for (weekday, hour, first_n, won_n), low, high in zip(counted, lows, highs, strict=True)]
    return sorted(cells, key=lambda c: (c.weekday, c.hour))


def ranked(cells: list[TimeCell]) -> list[TimeCell]:
    """The cells with enough first touches, best first (by the interval's lower bound: a cell has to be
    convincingly good, not lucky)."""
    return sorted((c for c in cells if not c.thin), key=lambda c: (-(c.low or 0), c.weekday, c.hour))


@dataclass(frozen=True)
class ChannelCost:
    """What one channel's messages cost (every message sent, whatever its case's currency), and, for the cases in
    the prices' currency, what the channel won back and that net of its cost."""

    channel: str
    currency: str
    sent_n: int
    cost: Decimal
    recovered: Decimal
    net: Decimal


@dataclass(frozen=True)
class Costs:
    currency: str
    channels: list[ChannelCost]
    #: recovered through Recoup minus every message's cost, for the cases in ``currency``
    net_recovered: Decimal | None


def costs(filters: Filters) -> Costs | None:
    """Costs and net recovered from the merchant's message prices (setting ``message_costs``); None when unset.
    Money in other currencies is never netted against the prices: only the cases in the prices' currency are."""
    from app.payments.money import minor_to_decimal
    from app.settings import get_setting

    setting = get_setting("message_costs")
    if not setting or not setting.get("currency"):
        return None
    currency = setting["currency"]
    prices = {channel: Decimal(str(price)) for channel, price in (setting.get("prices") or {}).items()}
    per_channel: dict[str, list[Any]] = {}
    for row in funnel(filters):
        slot = per_channel.setdefault(str(row.value), [0, 0, 0])  # sent (all), sent (this currency), paid minor
        slot[0] += row.sent_n
        if row.currency == currency:
            slot[1] += row.sent_n
            slot[2] += row.paid_minor
    channels, spent_here = [], Decimal(0)
    for channel, (sent, sent_here, paid) in sorted(per_channel.items()):
        price = prices.get(channel, Decimal(0))
        recovered = minor_to_decimal(paid, currency)
        spent_here += price * sent_here
        channels.append(ChannelCost(channel, currency, sent, price * sent, recovered, recovered - price * sent_here))
    tile = next((k for k in kpis(filters) if k.currency == currency), None)
    net = minor_to_decimal(tile.recovered_minor, currency) - spent_here if tile is not None else None
    return Costs(currency, channels, net)


#: a holdout smaller than this says nothing yet: the page says so instead of showing an interval
MIN_HOLDOUT = 30


@dataclass(frozen=True)
class HoldoutLift:
    """What Recoup adds, in one currency: the cases it worked (not held out) against the holdout (no outreach), each
    counted as recovered however it was paid (through Recoup or elsewhere: what the holdout recovers is recovered
    anyway). ``lift`` is the difference in recovery rate with its 95 % Newcombe interval (experiments.lift); None
    while the holdout has fewer than :data:`MIN_HOLDOUT` cases."""

    currency: str
    treated_n: int
    treated_paid_n: int
    holdout_n: int
    holdout_paid_n: int
    lift: tuple[float, float, float] | None  # (estimate, low, high), rate points as fractions

    @property
    def treated_rate(self) -> Decimal | None:
        return _rate(self.treated_paid_n, self.treated_n)

    @property
    def holdout_rate(self) -> Decimal | None:
        return _rate(self.holdout_paid_n, self.holdout_n)

    @property
    def extra_cases(self) -> tuple[int, int, int] | None:
        """How many of the worked cases would not have been paid without Recoup: the lift times those cases."""
        if self.lift is None:
            return None
        return tuple(round(x * self.treated_n) for x in self.lift)  # type: ignore[return-value]


def holdout_lift(filters: Filters) -> list[HoldoutLift]:
    """Recovery with Recoup against the holdout, per currency (those with a holdout at all)."""
    from experiments.arms import ArmData
    from experiments.lift import newcombe_interval

    counts: dict[str, dict[bool, list[int]]] = defaultdict(lambda: {True: [0, 0], False: [0, 0]})
    for holdout, currency, failed, recovered, elsewhere in _sum(
            _CASES, ("holdout", "currency"), ("failed_n", "recovered_n", "elsewhere_n"), filters):
        slot = counts[currency or "?"][bool(holdout)]
        slot[0] += failed
        slot[1] += recovered + elsewhere
    rows = []
    for currency, arms in counts.items():
        (held, held_paid), (worked, worked_paid) = arms[True], arms[False]
        if not held or not worked:
            continue
        lift = None
        if held >= MIN_HOLDOUT:
            interval = newcombe_interval(ArmData("recoup", worked, worked_paid), ArmData("holdout", held, held_paid))
            lift = (interval.estimate, interval.lower, interval.upper)
        rows.append(HoldoutLift(currency, worked, worked_paid, held, held_paid, lift))
    return sorted(rows, key=lambda r: (-(r.treated_n + r.holdout_n), r.currency))
