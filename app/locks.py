"""One holder at a time, across processes: MariaDB's ``GET_LOCK`` on a connection of its own; within the process on
SQLite (the embedded default is one process). Used by the fetch (one per account) and the analytics rollups."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from app.extensions import db

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class Busy(Exception):
    """Someone else holds the lock."""


def lock_name(kind: str, database: str | None, key: object) -> str:
    """GET_LOCK names are global to the MariaDB server: the database's name is part of it, so two Recoup databases
    on one server (staging beside production, a test run beside a benchmark) never block each other. MariaDB takes
    at most 64 characters: a long database name is hashed."""
    name = f"recoup-{kind}-{database or ''}-{key}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256((database or "").encode()).hexdigest()[:24]
    return f"recoup-{kind}-{digest}-{key}"


@contextmanager
def exclusive(kind: str, key: object = "") -> Iterator[None]:
    """Hold the lock ``kind``/``key`` for the block, or raise :class:`Busy` at once."""
    engine = db.engine
    if engine.dialect.name == "mysql":
        name = lock_name(kind, engine.url.database, key)
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() != 1:
                raise Busy(name)
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        return
    with _process_locks_guard:
        lock = _process_locks.setdefault(f"{kind}-{key}", threading.Lock())
    if not lock.acquire(blocking=False):
        raise Busy(f"{kind}-{key}")
    try:
        yield
    finally:
        lock.release()
