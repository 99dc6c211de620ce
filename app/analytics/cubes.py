"""The daily one-dimension cubes (app.models.analytics.CaseDay, MessageDay): the hourly rollups' changes, summed by
day, currency (and channel), and one dimension at a time.

A change of one rollup row (an hour, its dimensions' values, the measures' difference) adds its difference to the
cube row of dimension ``*`` and to one row per dimension, under that dimension's value. Rows are upserted (MariaDB's
``ON DUPLICATE KEY UPDATE``, SQLite's ``ON CONFLICT``), one statement per batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models.analytics import ALL, CASE_CUBE_DIMENSIONS, MESSAGE_CUBE_DIMENSIONS

#: the value of a row of dimension ``*`` (everything)
EVERYTHING = "null"


def encode(value: Any) -> str:
    """A dimension's value as the cubes store it (JSON: NULL is a value like any other)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def decode(value: str) -> Any:
    return json.loads(value)


def _values(table: sa.Table, dimensions: tuple[str, ...], dims: tuple[Any, ...]) -> Iterable[tuple[str, str]]:
    """(dimension, encoded value) of every cube row one rollup row counts in."""
    named = dict(zip(dimensions, dims, strict=True))
    yield ALL, EVERYTHING
    for name in CASE_CUBE_DIMENSIONS if "channel" not in table.c else MESSAGE_CUBE_DIMENSIONS:
        if name == "slot":
            yield name, encode([named["weekday"], named["local_hour"]])
        else:
            yield name, encode(named[name])


def add(table: sa.Table, dimensions: tuple[str, ...], measures: tuple[str, ...],
        changes: list[tuple[datetime, tuple[Any, ...], list[int]]]) -> None:
    """Add rollup rows' differences ``(hour, dimension values, measure deltas)`` to the cube ``table`` (in the open
    transaction)."""
    has_channel = "channel" in table.c
    sums: dict[tuple[Any, ...], list[int]] = {}
    for bucket, dims, delta in changes:
        named = dict(zip(dimensions, dims, strict=True))
        head: tuple[Any, ...] = (bucket.date(), named["currency"] or "")
        if has_channel:
            head += (named["channel"] or "",)
        for dim, value in _values(table, dimensions, dims):
            slot = sums.setdefault((*head, dim, value), [0] * len(measures))
            for i, d in enumerate(delta):
                slot[i] += d
    keys = ("day", "currency", *(("channel",) if has_channel else ()), "dim", "value")
    rows = [{**dict(zip(keys, key, strict=True)), **dict(zip(measures, delta, strict=True))}
            for key, delta in sums.items() if any(delta)]
    upsert(table, ("dim", "day", "currency", *(("channel",) if has_channel else ()), "value"), measures, rows)


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

