"""Sign-in throttling that holds under concurrency: a password is checked only after an attempt was reserved.

Three counters, each a row of ``sign_in_throttle`` moved by one atomic ``UPDATE`` (never read, changed and written
back, which let 60 parallel guesses all through):

- an account *from one client* (``LOGIN_MAX_FAILURES``, 5): the lockout a person meets after mistyping. It is per
  client, so someone else's wrong guesses never lock the account for its owner at another address;
- one client across every account (``LOGIN_CLIENT_MAX_FAILURES``, 20): no address may spray guesses at many
  accounts;
- one account across every client (``LOGIN_ACCOUNT_MAX_FAILURES``, 50): a backstop against guesses spread over
  many addresses.

Each attempt first reserves a step on all three (``failures = failures + 1 WHERE failures < limit``); only with all
three reserved is the password checked, so however many requests race, no more than the limit are checked. A wrong
password keeps the reservation as a failure, and the counter that reached its limit locks for
``LOGIN_LOCK_SECONDS``; a right one clears the account's counters and gives the client its step back. Failures
older than ``LOGIN_FAILURE_WINDOW_SECONDS`` are forgotten. Keys are hashes of the email (as typed) and the address,
so an unknown email is throttled exactly like a real one: the answer never tells them apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models.types import utcnow
from app.models.users import SignInThrottle


@dataclass(frozen=True)
class SignInLimits:
    per_account_and_client: int = 5
    per_client: int = 20
    per_account: int = 50
    lock_seconds: int = 300
    window_seconds: int = 900

    @classmethod
    def from_config(cls, config: Any) -> SignInLimits:
        return cls(
            per_account_and_client=int(config.get("LOGIN_MAX_FAILURES", 5)),
            per_client=int(config.get("LOGIN_CLIENT_MAX_FAILURES", 20)),
            per_account=int(config.get("LOGIN_ACCOUNT_MAX_FAILURES", 50)),
            lock_seconds=int(config.get("LOGIN_LOCK_SECONDS", 300)),
            window_seconds=int(config.get("LOGIN_FAILURE_WINDOW_SECONDS", 900)),
        )


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int
    kind: str  # account_client | client | account


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:56]


def counters(email: str, client: str, limits: SignInLimits) -> list[Counter]:
    """The counters one attempt moves, always in the same order (so concurrent attempts never deadlock)."""
    account = email.strip().lower()
    return [
        Counter("c:" + _digest("client", client), limits.per_client, "client"),
        Counter("a:" + _digest("account", account), limits.per_account, "account"),
        Counter("p:" + _digest("pair", account, client), limits.per_account_and_client, "account_client"),
    ]


def _table() -> sa.Table:
    return SignInThrottle.__table__  # type: ignore[return-value]


def _ensure_rows(keys: list[str], now: datetime) -> None:
    """A row for each key, in a transaction of its own (an insert that finds the row takes a shared lock, which must
    not be held when the update wants it)."""
    table = _table()
    existing = set(db.session.scalars(sa.select(table.c.key).where(table.c.key.in_(keys))))
    missing = [k for k in keys if k not in existing]
    if missing:
        insert = (sa.insert(table).prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite"))
        db.session.execute(insert, [{"key": k, "failures": 0, "locked_until": None, "updated_at": now}
                                    for k in missing])
    db.session.commit()


def reserve(attempt: list[Counter], limits: SignInLimits, now: datetime | None = None) -> bool:
    """Reserve one step on every counter, atomically each; False (and nothing reserved) when one is at its limit
    or locked. Committed before returning, so racing attempts see each other's reservations."""
    now = now or utcnow()
    table = _table()
    _ensure_rows([c.key for c in attempt], now)
    stale = now - timedelta(seconds=limits.window_seconds)
    taken: list[Counter] = []
    for counter in attempt:
        key = table.c.key == counter.key
        # a lock that ran out, or failures nobody added to for a while, are forgotten
        db.session.execute(sa.update(table).where(key, sa.or_(
            table.c.locked_until <= now,
            sa.and_(table.c.locked_until.is_(None), table.c.updated_at <= stale, table.c.failures > 0),
        )).values(failures=0, locked_until=None, updated_at=now))
        step = sa.update(table).where(key, table.c.failures < counter.limit, table.c.locked_until.is_(None)
                                      ).values(failures=table.c.failures + 1, updated_at=now)
        moved = db.session.execute(step)
        if moved.rowcount != 1 and db.session.scalar(sa.select(table.c.key).where(key)) is None:
            # pruned between its making and now (prune): made again, in a transaction of its own, and tried again
            db.session.commit()
            _ensure_rows([counter.key], now)
            moved = db.session.execute(step)
        if moved.rowcount != 1:
            _give_back(taken, now)
            db.session.commit()
            return False
        taken.append(counter)
    db.session.commit()
    return True


def _give_back(taken: list[Counter], now: datetime) -> None:
    table = _table()
    for counter in taken:
        db.session.execute(sa.update(table).where(table.c.key == counter.key, table.c.failures > 0)
                           .values(failures=table.c.failures - 1, updated_at=now))


def failed(attempt: list[Counter], limits: SignInLimits, now: datetime | None = None) -> list[Counter]:
    """The password was wrong: the reservations stay as failures; each counter now at its limit locks. The counters
    this attempt locked (the caller audits them). Committed by the caller."""
    now = now or utcnow()
    table = _table()
    until = now + timedelta(seconds=limits.lock_seconds)
    locked = []
    for counter in attempt:
        result = db.session.execute(sa.update(table).where(
            table.c.key == counter.key, table.c.failures >= counter.limit, table.c.locked_until.is_(None),
        ).values(locked_until=until, updated_at=now))
        if result.rowcount == 1:
            locked.append(counter)
    return locked


def succeeded(attempt: list[Counter], now: datetime | None = None) -> None:
    """The password was right: the account's counters start again; the client gets its step back. Committed by the
    caller."""
    now = now or utcnow()
    table = _table()
    for counter in attempt:
        if counter.kind == "client":
            _give_back([counter], now)
        else:
            db.session.execute(sa.update(table).where(table.c.key == counter.key)
                               .values(failures=0, locked_until=None, updated_at=now))


def prune(limits: SignInLimits, now: datetime | None = None) -> int:
    """Forget counters nobody has moved for a window and that hold no lock (a spray of made-up emails must not grow
    the table for ever); how many went. Committed by the caller."""
    now = now or utcnow()
    table = _table()
    stale = now - timedelta(seconds=max(limits.window_seconds, limits.lock_seconds))
    result = db.session.execute(sa.delete(table).where(
        table.c.updated_at <= stale, sa.or_(table.c.locked_until.is_(None), table.c.locked_until <= now)))
    return int(result.rowcount or 0)
