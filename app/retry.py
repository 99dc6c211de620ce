"""Retrying a unit of work that lost a lock conflict: MariaDB ends one side of a deadlock (1213) or a lock wait that
ran out (1205) with an error and a rolled-back transaction, and the documented answer is to run it again. SQLite
reports a busy database as "database is locked". Anything else is raised at once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from app.extensions import db

log = logging.getLogger(__name__)

T = TypeVar("T")

#: MariaDB/MySQL: deadlock found, lock wait timeout exceeded
LOCK_CONFLICTS = (1213, 1205)
TRIES = 4


def lock_conflict(exc: BaseException) -> bool:
    """Did ``exc`` come from a lock conflict the database resolved by rolling this side back?"""
    if not isinstance(exc, OperationalError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and args[0] in LOCK_CONFLICTS:
        return True
    return "database is locked" in str(exc.orig)


def committed(work: Callable[[], T], *, tries: int = TRIES, what: str = "a transaction") -> T:
    """``work()`` then commit; after a lock conflict, roll back and run both again (up to ``tries`` times, with a
    short random pause, so two writers that met do not meet again). ``work`` must be safe to run again after a
    rollback: everything it wrote is undone by it."""
    for attempt in range(1, tries + 1):
        try:
            result = work()
            db.session.commit()
            return result
        except OperationalError as exc:
            db.session.rollback()
            if not lock_conflict(exc) or attempt == tries:
                raise
            log.info("%s lost a lock conflict (%s); again, try %d of %d", what, exc.orig, attempt + 1, tries)
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")
