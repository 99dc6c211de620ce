"""The daily cubes beside the hourly rollups (app.models.analytics): the rollups' changes summed by day, currency
(and channel), and one dimension at a time (CaseDay, MessageDay), a pair of them (CasePair, MessagePair), or, for
messages, the customer's local weekday with an hour a column (MessageHours).

A change of one rollup row (an hour, its dimensions' values, the measures' difference) adds its difference to the
cube row of dimension ``*`` and to one row per dimension under that dimension's value; to one row per pair under
the pair's two values; and to the hour grid's row of its local weekday (everything, and each filter dimension's
value), in its local hour's columns. Rows are upserted (MariaDB's ``ON DUPLICATE KEY UPDATE``, SQLite's
``ON CONFLICT``), one statement per table (per local hour for the grid) and batch.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models.analytics import (
    ALL,
    CASE_CUBE_DIMENSIONS,
    CASE_PAIRS,
    FILTER_DIMENSIONS,
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


def _accumulate(sums: dict[tuple[Any, ...], list[int]], key: tuple[Any, ...], delta: list[int]) -> None:
    slot = sums.get(key)
    if slot is None:
        sums[key] = list(delta)
    else:
        for i, d in enumerate(delta):
            slot[i] += d


def _rows(columns: tuple[str, ...], measures: tuple[str, ...],
          sums: dict[tuple[Any, ...], list[int]]) -> list[dict[str, Any]]:
    return [{**dict(zip(columns, key, strict=True)), **dict(zip(measures, delta, strict=True))}
            for key, delta in sums.items() if any(delta)]


def add(days: sa.Table, pairs: sa.Table, grid: sa.Table | None, dimensions: tuple[str, ...],
        measures: tuple[str, ...], changes: list[tuple[datetime, tuple[Any, ...], list[int]]]) -> None:
    """Add rollup rows' differences ``(hour, dimension values, measure deltas)`` to the daily cubes of cases or
    messages (in the open transaction): ``days`` (one dimension), ``pairs`` (two) and, for messages, the hour
    ``grid``."""
    messages = grid is not None
    singles = MESSAGE_CUBE_DIMENSIONS if messages else CASE_CUBE_DIMENSIONS
    couples = [(pair_name(first, other), first, other) for first, other in (MESSAGE_PAIRS if messages
                                                                            else CASE_PAIRS)]
    one: dict[tuple[Any, ...], list[int]] = {}
    two: dict[tuple[Any, ...], list[int]] = {}
    by_hour: dict[int, dict[tuple[Any, ...], list[int]]] = {}
    for bucket, dims, delta in changes:
        named = dict(zip(dimensions, dims, strict=True))
        head: tuple[Any, ...] = (bucket.date(), named["currency"] or "")
        if messages:
            head += (named["channel"] or "",)
        coded = {name: encode(named[name]) for name in singles}
        _accumulate(one, (ALL, EVERYTHING, *head), delta)
        for name in singles:
            _accumulate(one, (name, coded[name], *head), delta)
        for pair, first, other in couples:
            _accumulate(two, (pair, coded[first], *head, coded[other]), delta)
        if messages:
            hour, weekday = named["local_hour"], named["weekday"]
            if hour is None or weekday is None:  # app.analytics.facts gives every sent message both
                raise ValueError(f"analytics: a message counted without its local hour and weekday: {named}")
            cells = by_hour.setdefault(int(hour), {})
            _accumulate(cells, (ALL, EVERYTHING, *head, int(weekday)), delta)
            for name in FILTER_DIMENSIONS:
                _accumulate(cells, (name, coded[name], *head, int(weekday)), delta)
    head_columns = ("day", "currency", *(("channel",) if messages else ()))
    upsert(days, ("dim", "value", *head_columns), measures, _rows(("dim", "value", *head_columns), measures, one))
    keys = ("pair", "first", *head_columns, "other")
    upsert(pairs, keys, measures, _rows(keys, measures, two))
    if grid is not None:
        keys = ("dim", "value", *head_columns, "weekday")
        for hour, cells in by_hour.items():
            columns = tuple(hour_column(m, hour) for m in measures)
            upsert(grid, keys, columns, _rows(keys, columns, cells))


def upsert(table: sa.Table, keys: tuple[str, ...], measures: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Add ``rows``' measures to the rows of ``table`` with the same ``keys`` (its unique key), inserting those that
    are new: one statement for them all (MariaDB's ``ON DUPLICATE KEY UPDATE``, SQLite's ``ON CONFLICT``)."""
    if not rows:
        return
    if db.engine.dialect.name == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        statement = mysql_insert(table)
        statement = statement.on_duplicate_key_update({m: table.c[m] + statement.inserted[m] for m in measures})
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table)
        statement = lite.on_conflict_do_update(index_elements=[table.c[k] for k in keys],
                                               set_={m: table.c[m] + lite.excluded[m] for m in measures})
    db.session.execute(statement, rows)


def clear(table: sa.Table, since: datetime | None) -> None:
    """Forget the cube's days from ``since`` (midnight UTC) on, or all of them."""
    statement = sa.delete(table)
    if since is not None:
        statement = statement.where(table.c.day >= since.date())
    db.session.execute(statement)


def first_day(since: datetime) -> datetime:
    """A rebuild from ``since`` starts at its day's midnight (UTC): the cubes count whole days."""
    return since.replace(hour=0, minute=0, second=0, microsecond=0)

