"""Timing core: when may a message go to a customer?

The one entry point is :func:`next_send_time`; :func:`detect_timezone` says which zones to pass it.
Pure Python (stdlib ``zoneinfo`` + ``phonenumbers`` + ``holidays``): no Flask, no database.

Layout: ``types`` (the values below), ``zones`` (timezone detection, US split-state postal data),
``legal`` (legal contact windows and caps, data in ``data/legal_windows.toml``), ``calendar`` (holidays,
weekends, blackouts), ``windows`` (per-zone, per-day tables of open intervals), ``cadence`` (caps over
rolling windows), ``scheduler`` (``next_send_time``).
"""

from rules.timing.scheduler import next_send_time
from rules.timing.types import (
    REASONS,
    CadenceCaps,
    ContactHistory,
    ContactRules,
    Scheduled,
    SentRecord,
    TimeRange,
    TimezoneGuess,
    WeeklyHours,
)
from rules.timing.zones import detect_timezone, zones_too_many

__all__ = [
    "REASONS",
    "CadenceCaps",
    "ContactHistory",
    "ContactRules",
    "Scheduled",
    "SentRecord",
    "TimeRange",
    "TimezoneGuess",
    "WeeklyHours",
    "detect_timezone",
    "next_send_time",
    "zones_too_many",
]
