"""The daily cubes beside the hourly rollups (app.models.analytics): the rollups' changes summed by day, currency
(and channel), and one dimension at a time (CaseDay, MessageDay), a pair of them (CasePair, MessagePair), or, for
messages, the customer's local weekday with an hour a column (MessageHours); and the one-dimension cubes and the
hour grid again by week (CaseWeek, MessageWeek, MessageHourWeeks: ``day`` is the week's Monday), from which a long
period reads its whole weeks.

A change of one rollup row (an hour, its dimensions' values, the measures' difference) adds its difference to the
cube row of dimension ``*`` and to one row per dimension under that dimension's value; to one row per pair under
the pair's two values; and to the hour grid's row of its local weekday (everything, and each filter dimension's
value), in its local hour's columns. A batch of changes is summed here first, by day and values and then by cube
row, so each cube row a batch touches is written once whatever the number of events behind it, and rows whose
differences are all zero not at all. Rows are upserted (MariaDB's ``ON DUPLICATE KEY UPDATE``, SQLite's
``ON CONFLICT``) as plain tuples, one statement per table (per local hour for the grid) and batch: building a
dict and an ORM parameter set per row cost more than the database's work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import add as plus
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models.analytics import (
    ALL,
    CASE_CUBE_DIMENSIONS,
    CASE_PAIRS,
    FILTER_DIMENSIONS,
    HOURS,
    MESSAGE_CUBE_DIMENSIONS,
    MESSAGE_PAIRS,
    hour_column,
    pair_name,
)

#: the value of a row of dimension ``*`` (everything)
EVERYTHING = "null"


def encode(value: Any) -> str:
    """A dimension's value as the cubes store it (JSON: NULL is a value like any other)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def decode(value: str) -> Any:
    return json.loads(value)


#: ``encode`` of a dimension's value, remembered (typed: True and 1 are different values)
_code = lru_cache(maxsize=4096, typed=True)(encode)

Sums = dict[tuple[Any, ...], list[int]]


def accumulate(sums: Sums, key: tuple[Any, ...], delta: Sequence[int]) -> None:
    slot = sums.get(key)
    sums[key] = list(delta) if slot is None else list(map(plus, slot, delta))


def week_of(day: date) -> date:
    """The Monday of ``day``'s week: the key of its row in a weekly cube."""
    return day - timedelta(days=day.weekday())


def _by_week(sums: Sums) -> Sums:
    """Rows keyed by (dim, value, day, ...) summed by week instead: the same key with the day's Monday."""
    weeks: Sums = {}
    for (dim, value, day, *rest), delta in sums.items():
        accumulate(weeks, (dim, value, week_of(day), *rest), delta)
    return weeks


def add(days: sa.Table, weeks: sa.Table, pairs: sa.Table, grid: sa.Table | None, grid_weeks: sa.Table | None,
        dimensions: tuple[str, ...], measures: tuple[str, ...],
        changes: list[tuple[datetime, tuple[Any, ...], list[int]]]) -> None:
    """Add rollup rows' differences ``(hour, dimension values, measure deltas)`` to the cubes of cases or messages
    (in the open transaction): ``days`` and ``weeks`` (one dimension), ``pairs`` (two) and, for messages, the hour
    ``grid`` and ``grid_weeks``."""
    messages = grid is not None
    by_day: Sums = {}  # the hours of a day with the same values count in the same cube rows
    for bucket, dims, delta in changes:
        accumulate(by_day, (bucket.date(), dims), delta)
    position = {name: i for i, name in enumerate(dimensions)}
    singles = MESSAGE_CUBE_DIMENSIONS if messages else CASE_CUBE_DIMENSIONS
    single_at = [(name, position[name]) for name in singles]
    couples = [(pair_name(first, other), position[first], position[other])
               for first, other in (MESSAGE_PAIRS if messages else CASE_PAIRS)]
    filters_at = [(name, position[name]) for name in FILTER_DIMENSIONS]
    currency_at, channel_at = position["currency"], position.get("channel")
    hour_at, weekday_at = position.get("local_hour"), position.get("weekday")
    one: Sums = {}
    two: Sums = {}
    by_hour: dict[int, Sums] = {}
    for (day, dims), delta in by_day.items():
        if not any(delta):
            continue
        head: tuple[Any, ...] = (day, dims[currency_at] or "")
        if channel_at is not None:
            head += (dims[channel_at] or "",)
        coded = [_code(value) for value in dims]
        accumulate(one, (ALL, EVERYTHING, *head), delta)
        for name, i in single_at:
            accumulate(one, (name, coded[i], *head), delta)
        for pair, i, j in couples:
            accumulate(two, (pair, coded[i], *head, coded[j]), delta)
        if messages:
            hour, weekday = dims[hour_at], dims[weekday_at]
            if hour is None or weekday is None:  # app.analytics.facts gives every sent message both
                raise ValueError("analytics: a message counted without its local hour and weekday: "
                                 f"{dict(zip(dimensions, dims, strict=True))}")
            cells = by_hour.setdefault(int(hour), {})
            accumulate(cells, (ALL, EVERYTHING, *head, int(weekday)), delta)
            for name, i in filters_at:
                accumulate(cells, (name, coded[i], *head, int(weekday)), delta)
    head_columns = ("day", "currency", *(("channel",) if messages else ()))
    upsert(days, ("dim", "value", *head_columns), measures, _rows(one))
    upsert(weeks, ("dim", "value", *head_columns), measures, _rows(_by_week(one)))
    upsert(pairs, ("pair", "first", *head_columns, "other"), measures, _rows(two))
    if grid is not None and grid_weeks is not None:
        keys = ("dim", "value", *head_columns, "weekday")
        _upsert_grid(grid, keys, measures, by_hour)
        _upsert_grid(grid_weeks, keys, measures, {hour: _by_week(sums) for hour, sums in by_hour.items()})


def _upsert_grid(grid: sa.Table, keys: tuple[str, ...], measures: tuple[str, ...], by_hour: dict[int, Sums]) -> None:
    """Write the hour grid's cells: one row per grid row the batch touched, with the columns of the measures and
    hours some row moved (the others are zero by default and left as they are)."""
    width = len(measures)
    cells: dict[tuple[Any, ...], list[int]] = {}
    for hour, sums in by_hour.items():
        at = hour * width
        for key, delta in sums.items():
            row = cells.get(key)
            if row is None:
                row = cells[key] = [0] * (width * len(HOURS))
            row[at:at + width] = delta
    rows = [values for values in cells.values() if any(values)]
    if not rows:
        return
    moved = [i for i, column in enumerate(zip(*rows, strict=True)) if any(column)]
    names = tuple(hour_column(measures[i % width], i // width) for i in moved)
    upsert(grid, keys, names, [(*key, *(values[i] for i in moved)) for key, values in cells.items() if any(values)])


def _rows(sums: Sums) -> list[tuple[Any, ...]]:
    """The cube rows to write: key then measures, leaving out those with nothing to add."""
    return [(*key, *delta) for key, delta in sums.items() if any(delta)]


def upsert(table: sa.Table, keys: tuple[str, ...], measures: tuple[str, ...], rows: list[tuple[Any, ...]],
           others: tuple[str, ...] = ()) -> None:
    """Add ``rows``' measures to the rows of ``table`` with the same ``keys`` (its unique key), inserting those that
    are new (with the columns ``others`` too): each row a tuple of ``keys``, ``others`` then ``measures``. One
    statement for them all (MariaDB's ``ON DUPLICATE KEY UPDATE``, SQLite's ``ON CONFLICT``; the driver sends
    MariaDB's as multi-row inserts)."""
    if rows:
        columns = (*keys, *others, *measures)
        _execute(_statement(table.name, columns, keys, measures, db.engine.dialect.name), table, columns, rows)


def insert(table: sa.Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples of ``columns``) into ``table``, one statement for them all."""
    if rows:
        _execute(_statement(table.name, columns, (), (), db.engine.dialect.name), table, columns, rows)


def _execute(sql: str, table: sa.Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Run ``sql`` (an insert of one row of ``columns``) for each row, its values converted as SQLAlchemy would (a
    time in UTC, a date or a boolean on SQLite), without SQLAlchemy's per-row parameter dicts."""
    dialect = db.engine.dialect
    processors = [(i, process) for i, name in enumerate(columns)
                  if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None]
    if processors:
        converted = []
        for row in rows:
            values = list(row)
            for i, process in processors:
                values[i] = process(values[i])
            converted.append(tuple(values))
        rows = converted
    connection = db.session.connection()
    if dialect.name != "mysql":
        connection.exec_driver_sql(sql, rows)
        return
    head, _, tail = sql.partition(" VALUES ")
    tail = tail[tail.index(")") + 1:]
    for text in _values_text(connection.connection.dbapi_connection, rows):
        connection.exec_driver_sql(f"{head} VALUES {text}{tail}", execution_options={"no_parameters": True})


def _values_text(dbapi: Any, rows: list[tuple[Any, ...]]) -> Iterator[str]:
    """MariaDB's multi-row ``VALUES (...), (...)`` of ``rows``, in statements under :data:`STATEMENT_BYTES`. The
    driver would quote each value the same way (its ``escape``) but through a generic path per value, which cost
    more than the upsert itself; here a number is its digits and the few other values (days, keys, dimension
    values) are quoted once each."""
    quoted: dict[tuple[type, Any], str] = {}
    parts: list[str] = []
    size = 0
    for row in rows:
        values = []
        for value in row:
            kind = type(value)
            if kind is int:
                values.append(str(value))
            else:
                text = quoted.get((kind, value))
                if text is None:
                    text = quoted[(kind, value)] = dbapi.escape(value)
                values.append(text)
        part = f"({','.join(values)})"
        if parts and size + len(part) > STATEMENT_BYTES:
            yield ",".join(parts)
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield ",".join(parts)


#: the size of one multi-row statement (MariaDB's max_allowed_packet is 16 MB by default; the driver uses 1 MB)
STATEMENT_BYTES = 1_000_000


@lru_cache(maxsize=256)
def _statement(table: str, columns: tuple[str, ...], keys: tuple[str, ...], measures: tuple[str, ...],
               dialect_name: str) -> str:
    quote = db.engine.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join(["%s" if dialect_name == "mysql" else "?"] * len(columns))
    sql = f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})"
    if measures and dialect_name == "mysql":
        sql += " ON DUPLICATE KEY UPDATE " + ", ".join(
            f"{quote(m)} = {quote(m)} + VALUES({quote(m)})" for m in measures)
    elif measures:
        sql += (f" ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET "
                + ", ".join(f"{quote(m)} = {quote(m)} + excluded.{quote(m)}" for m in measures))
    return sql


def clear(table: sa.Table, since: datetime | None) -> None:
    """Forget the cube's days (or weeks) from ``since`` (a Monday, midnight UTC) on, or all of them."""
    statement = sa.delete(table)
    if since is not None:
        statement = statement.where(table.c.day >= since.date())
    db.session.execute(statement)


def first_day(since: datetime) -> datetime:
    """A rebuild from ``since`` starts at the midnight (UTC) that begins its week, a Monday: the weekly cubes count
    whole weeks."""
    aware = since if since.tzinfo else since.replace(tzinfo=UTC)  # a time without a zone is UTC, as everywhere
    return datetime.combine(week_of(aware.astimezone(UTC).date()), time(), UTC)

