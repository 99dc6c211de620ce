"""Keeping the hourly rollups and the daily cubes (app.analytics.cubes) equal to the sum of the facts
(app.analytics.facts).

:func:`refresh` looks at some cases and messages again: each one's new fact is compared with the fact stored when it
was last counted, and only the difference goes to the rollup rows (a fact that did not change changes nothing, so
looking again is always safe). :func:`refresh_changed` finds what changed since its last run from the raw rows'
own times, re-reading a few minutes before it (a transaction that committed late is still seen); :func:`rebuild`
recomputes everything, or everything from a day on, from the raw rows. One of them runs at a time
(app.locks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.analytics import cubes
from app.analytics.facts import Fact, attribution_window, case_facts, hour_of, message_facts
from app.extensions import db
from app.locks import exclusive
from app.models import ConsentEvent, Customer, MessageEvent, OutboxMessage, RecoveryCase, Setting
from app.models.analytics import (
    CASE_DIMENSIONS,
    CASE_MEASURES,
    MESSAGE_DIMENSIONS,
    MESSAGE_MEASURES,
    CaseDay,
    CaseFact,
    CasePair,
    CaseRollup,
    CaseWeek,
    MessageDay,
    MessageFact,
    MessageHours,
    MessageHourWeeks,
    MessagePair,
    MessageRollup,
    MessageWeek,
)
from app.models.types import utcnow

log = logging.getLogger(__name__)

CHUNK = 500
#: the ids counted in one transaction: their differences are summed before the rollups and cubes are written, so
#: the rows a batch touches are written once (a rebuild's chunks would otherwise write most cube rows again each)
BATCH = 10_000
#: how far before its last run a refresh reads again: a transaction that began before the run and committed after
#: it wrote times the run had already passed
LOOKBACK = timedelta(minutes=5)
CURSOR_KEY = "analytics.refreshed_through"
#: the attribution window (hours) the stored facts were counted with: another one means counting everything again
WINDOW_KEY = "analytics.window"
LOCK = "analytics"


@dataclass(frozen=True)
class _Kind:
    """Cases or messages: where their facts and rollups live, and how a fact is computed."""

    facts: Any
    rollups: Any
    days: Any
    weeks: Any
    pairs: Any
    grid: Any
    grid_weeks: Any
    key: str
    dimensions: tuple[str, ...]
    measures: tuple[str, ...]
    compute: Any


CASES = _Kind(CaseFact.__table__, CaseRollup.__table__, CaseDay.__table__, CaseWeek.__table__, CasePair.__table__,
              None, None, "case_id", CASE_DIMENSIONS, CASE_MEASURES, case_facts)
MESSAGES = _Kind(MessageFact.__table__, MessageRollup.__table__, MessageDay.__table__, MessageWeek.__table__,
                 MessagePair.__table__, MessageHours.__table__, MessageHourWeeks.__table__, "message_id",
                 MESSAGE_DIMENSIONS, MESSAGE_MEASURES, message_facts)


def _chunks(ids: Iterable[int], size: int = CHUNK) -> Iterator[list[int]]:
    batch: list[int] = []
    for i in ids:
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Moves:
    """The rollup rows' differences a batch of chunks makes, summed by (hour, dimensions key) until written, with
    the dimension values of each: a batch writes each rollup and cube row it touches once."""

    def __init__(self) -> None:
        self.deltas: cubes.Sums = {}
        self.dims_of: dict[tuple[datetime, str], tuple[Any, ...]] = {}


def _count(kind: _Kind, ids: list[int], window: timedelta, moves: _Moves) -> int:
    """Count ``ids`` again (in the open transaction): their new facts replace the stored ones, the difference goes
    to ``moves``. Returns how many changed."""
    new = kind.compute(ids, window)
    facts = kind.facts
    old = {row[0]: row for row in db.session.execute(
        sa.select(facts.c[kind.key], facts.c.bucket, facts.c.dims_key, *(facts.c[m] for m in kind.measures))
        .where(facts.c[kind.key].in_(ids)).with_for_update())}
    changed: list[int] = []
    rows: list[tuple[Any, ...]] = []
    for key in ids:
        fact: Fact | None = new.get(key)
        before = old.get(key)
        after = (hour_of(fact.bucket), fact.dims_key, *fact.measures) if fact is not None else None
        stored = (hour_of(before[1]), before[2], *before[3:]) if before is not None else None
        if after == stored:
            continue
        changed.append(key)
        if stored is not None:
            cubes.accumulate(moves.deltas, (stored[0], stored[1]), [-int(value) for value in stored[2:]])
        if after is not None:
            where = (after[0], after[1])
            moves.dims_of[where] = fact.dims  # type: ignore[union-attr]
            cubes.accumulate(moves.deltas, where, after[2:])
            rows.append((key, *after))
    if changed:
        db.session.execute(sa.delete(facts).where(facts.c[kind.key].in_(changed)))
        cubes.insert(facts, (kind.key, "bucket", "dims_key", *kind.measures), rows)
    return len(changed)


def _write(kind: _Kind, moves: _Moves) -> None:
    """Add a batch's differences to the hourly rollups and the daily cubes (in the open transaction)."""
    moved = {where: delta for where, delta in moves.deltas.items() if any(delta)}
    dims_of = moves.dims_of
    dims_of.update(_stored_dims(kind, [where for where in moved if where not in dims_of]))
    lost = [where for where in moved if where not in dims_of]
    if lost:  # a fact counted under a rollup row that is gone: the rollups were changed behind our back
        raise RuntimeError(f"analytics: rollup rows to subtract from are missing: {lost[:3]}")
    cubes.upsert(kind.rollups, ("bucket", "dims_key"), kind.measures,
                 [(bucket, key, *dims_of[(bucket, key)], *delta) for (bucket, key), delta in moved.items()],
                 others=kind.dimensions)
    cubes.add(kind.days, kind.weeks, kind.pairs, kind.grid, kind.grid_weeks, kind.dimensions, kind.measures,
              [(bucket, dims_of[(bucket, key)], delta) for (bucket, key), delta in moved.items()])


def _stored_dims(kind: _Kind, where: list[tuple[datetime, str]]) -> dict[tuple[datetime, str], tuple[Any, ...]]:
    """The dimension values of rollup rows, by (hour, key): what a fact being taken back was counted under."""
    found: dict[tuple[datetime, str], tuple[Any, ...]] = {}
    rollups = kind.rollups
    for start in range(0, len(where), CHUNK):
        part = where[start:start + CHUNK]
        for bucket, key, *dims in db.session.execute(
            sa.select(rollups.c.bucket, rollups.c.dims_key, *(rollups.c[d] for d in kind.dimensions))
            .where(rollups.c.dims_key.in_({k for _, k in part}), rollups.c.bucket.in_({b for b, _ in part}))
        ):
            found[(hour_of(bucket), key)] = tuple(dims)
    return found


def refresh(case_ids: Iterable[int] = (), message_ids: Iterable[int] = (),
            window: timedelta | None = None) -> dict[str, int]:
    """Count these cases and messages again; commits per batch of :data:`BATCH`. Returns how many changed of
    each."""
    window = window or attribution_window()
    counts = {"cases": 0, "messages": 0}
    for name, kind, ids in (("cases", CASES, sorted(set(case_ids))), ("messages", MESSAGES,
                                                                       sorted(set(message_ids)))):
        for batch in _chunks(ids, BATCH):
            moves = _Moves()
            for chunk in _chunks(batch):
                counts[name] += _count(kind, chunk, window, moves)
            _write(kind, moves)
            db.session.commit()
    return counts


def _changed_since(since: datetime) -> tuple[set[int], set[int]]:
    """(case ids, message ids) whose raw rows changed at or after ``since``."""
    cases = set(db.session.scalars(sa.select(RecoveryCase.id).where(RecoveryCase.updated_at >= since)))
    messages = set(db.session.scalars(sa.select(OutboxMessage.id).where(OutboxMessage.updated_at >= since,
                                                                        OutboxMessage.sent_at.is_not(None))))
    messages |= set(db.session.scalars(sa.select(MessageEvent.message_id).distinct()
                                       .where(MessageEvent.recorded_at >= since)))
    customers = set(db.session.scalars(sa.select(Customer.id).where(Customer.updated_at >= since)))
    cases |= set(db.session.scalars(sa.select(RecoveryCase.id).where(RecoveryCase.customer_id.in_(customers)))) \
        if customers else set()
    # an opt-out counts against the messages shortly before it
    customers |= set(db.session.scalars(sa.select(ConsentEvent.customer_id).distinct()
                                        .where(ConsentEvent.at >= since, ConsentEvent.action == "opt_out")))
    if customers:
        messages |= set(db.session.scalars(sa.select(OutboxMessage.id).where(
            OutboxMessage.customer_id.in_(customers), OutboxMessage.sent_at.is_not(None))))
    if cases:  # a recovery credits one of its case's messages (and may stop crediting another)
        for chunk in _chunks(sorted(cases)):
            messages |= set(db.session.scalars(sa.select(OutboxMessage.id).where(
                OutboxMessage.case_id.in_(chunk), OutboxMessage.sent_at.is_not(None))))
    return cases, messages


def refresh_changed(now: datetime | None = None) -> dict[str, int]:
    """Count again what changed since the last run (a few minutes more); the periodic analytics job."""
    started = now or utcnow()
    with exclusive(LOCK):
        window = attribution_window()
        cursor = db.session.get(Setting, CURSOR_KEY)
        counted_with = db.session.get(Setting, WINDOW_KEY)
        since = (datetime.fromisoformat(cursor.value) - LOOKBACK) if cursor is not None and cursor.value \
            else datetime(1970, 1, 1, tzinfo=UTC)
        if counted_with is not None and counted_with.value != _hours(window):
            since = datetime(1970, 1, 1, tzinfo=UTC)  # the merchant changed the window: credit everything again
        cases, messages = _changed_since(since)
        counts = refresh(cases, messages, window)
        _set_cursor(started, window)
    return counts


def _hours(window: timedelta) -> int:
    return int(window.total_seconds() // 3600)


def _set_cursor(at: datetime, window: timedelta) -> None:
    for key, value in ((CURSOR_KEY, at.isoformat()), (WINDOW_KEY, _hours(window))):
        row = db.session.get(Setting, key)
        if row is None:
            db.session.add(Setting(key=key, value=value))
        else:
            row.value = value
    db.session.commit()


def rebuild(since: datetime | None = None) -> dict[str, int]:
    """Recompute the rollups from the raw rows: all of them, or the weeks from ``since``'s on (cases opened and
    messages sent since the Monday of its week, midnight UTC: the weekly cubes count whole weeks). Returns how many
    of each were counted."""
    started = utcnow()
    with exclusive(LOCK):
        window = attribution_window()
        bucket = cubes.first_day(hour_of(since)) if since is not None else None
        for kind in (CASES, MESSAGES):
            for table in (kind.facts, kind.rollups):
                statement = sa.delete(table)
                if bucket is not None:
                    statement = statement.where(table.c.bucket >= bucket)
                db.session.execute(statement)
            for cube in (kind.days, kind.weeks, kind.pairs, kind.grid, kind.grid_weeks):
                if cube is not None:
                    cubes.clear(cube, bucket)
        db.session.commit()
        case_query = sa.select(RecoveryCase.id).order_by(RecoveryCase.id)
        message_query = sa.select(OutboxMessage.id).where(OutboxMessage.sent_at.is_not(None)).order_by(OutboxMessage.id)
        if bucket is not None:
            case_query = case_query.where(RecoveryCase.opened_at >= bucket)
            message_query = message_query.where(OutboxMessage.sent_at >= bucket)
        counts = refresh(db.session.scalars(case_query).all(), db.session.scalars(message_query).all(), window)
        _set_cursor(started, window)
    return counts
