"""The business clock: the "now" that decides what is due (planning, dispatch, case deadlines).

In production it is the real clock, always. The demo can move it forward, like Stripe's test clocks:
``business_now()`` is the real UTC time plus an offset stored in the ``settings`` table, so the web app, the
periodic jobs and a restarted demo all read the same time. The offset is honoured only when the app runs the demo
(``DEMO_MODE``) or a test asks for it (``DEMO_CLOCK``), and never under the production config.

What stays on the real clock: dispatch leases and heartbeats, fetch windows (the gateway dates its records in real
time), payment-link lifetimes (a customer's browser lives in real time), and every timestamp a provider sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.models.types import utcnow

OFFSET_KEY = "demo_clock_offset_seconds"
#: how far the demo clock may run ahead of the real one (a year: past every policy's give-up time)
MAX_OFFSET = timedelta(days=366)
BUSINESS_MORNING = time(9, 0)


class ClockError(ValueError):
    pass


def clock_enabled() -> bool:
    """Whether this app honours the stored offset (demo or DEMO_CLOCK, never the production config)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return False
    config = current_app.config
    if config.get("ENV_NAME") == "production":
        return False
    return bool(config.get("DEMO_MODE") or config.get("DEMO_CLOCK"))


def offset() -> timedelta:
    """How far the business clock runs ahead of the real one (zero when the clock is not enabled)."""
    if not clock_enabled():
        return timedelta(0)
    return _stored_offset()


def _stored_offset() -> timedelta:
    from app.extensions import db
    from app.models import Setting

    row = db.session.get(Setting, OFFSET_KEY)
    seconds = row.value if row is not None else 0
    return timedelta(seconds=int(seconds or 0))


def business_now() -> datetime:
    return utcnow() + offset()


def business_clock() -> Callable[[], datetime]:
    """A clock for one run (a dispatch, a fetch): the offset is read once, then it ticks with the real clock."""
    ahead = offset()
    if not ahead:
        return utcnow
    return lambda: utcnow() + ahead


def advance(by: timedelta, *, actor: str) -> datetime:
    """Move the business clock forward by ``by``; returns the new business time. Audited."""
    if not clock_enabled():
        raise ClockError("the business clock can only be moved in the demo")
    if by <= timedelta(0):
        raise ClockError("the clock only moves forward: give a positive amount of time")
    before = _stored_offset()
    after = before + by
    if after > MAX_OFFSET:
        raise ClockError(f"the demo clock may run at most {MAX_OFFSET.days} days ahead of real time")
    return utcnow() + _store(after, actor=actor, by=by)


def advance_to(moment: datetime, *, actor: str) -> datetime:
    """Move the business clock forward to ``moment`` (aware); a moment already past is refused."""
    if moment.tzinfo is None:
        raise ClockError("give the moment with its time zone")
    now = business_now()
    if moment <= now:
        raise ClockError(f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC is not in the future of the business clock")
    return advance(moment - now, actor=actor)


def _store(after: timedelta, *, actor: str, by: timedelta) -> timedelta:
    from app.audit import record
    from app.extensions import db
    from app.models import Setting

    seconds = math.ceil(after.total_seconds())  # whole seconds, never short of the moment asked for
    db.session.merge(Setting(key=OFFSET_KEY, value=seconds, updated_by=actor))
    record(actor, "demo.clock_advanced", "setting", OFFSET_KEY,
           {"by_seconds": int(by.total_seconds()), "offset_seconds": seconds,
            "business_now": (utcnow() + after).isoformat(timespec="seconds")})
    db.session.commit()
    return timedelta(seconds=seconds)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ClockError(f"{name!r} is not a time zone (write it like Europe/Madrid)") from None


def next_business_morning(now: datetime, zone_name: str | None) -> datetime:
    """The next 09:00, Monday to Friday, in ``zone_name``, after ``now`` (aware)."""
    tz = zone(zone_name)
    local = now.astimezone(tz)
    day = local.date() if local.time() < BUSINESS_MORNING else local.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, BUSINESS_MORNING, tzinfo=tz).astimezone(UTC)
