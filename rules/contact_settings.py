"""The merchant's contact windows (admin settings) merged with a policy's own timing statements -> ContactRules.

The ``contact_windows`` setting holds business hours, quiet hours and blackout dates by region::

    {"*":     {"business_hours": "mon-fri 09:00-18:00", "quiet_hours": "21:00-08:00", "blackout_dates": []},
     "US":    {"quiet_hours": "21:00-09:00"},
     "US-FL": {"business_hours": "mon-fri 09:00-17:00, sat 10:00-14:00", "blackout_dates": ["2026-12-24"]}}

How the two combine (for business hours and for quiet hours separately):

- the policy wins wherever it speaks for the customer's place: a policy statement without regions speaks for
  everyone, so it replaces every setting of that kind; a policy statement ``in "US"`` replaces the settings for
  ``US`` and for every ``US-..`` region;
- where the policy is silent, the settings apply, most specific first (``US-FL``, then ``US``, then ``*``);
- where both are silent: no business-hours constraint, and the shipped quiet hours (ContactRules.default()).

Blackout dates are the settings' only (the policy language has none): those of ``*``, of the customer's country
and of their region all apply. Holidays, weekends, cadence caps and the urgent override come from the policy as
:func:`contact_rules` reads them; the legal windows are applied by the timing core on top of all this and nothing
here can widen them. ``rules.contact_rules.contact_rules_for`` is the one entry point the planner and the
dispatcher use.

Pure: no Flask, no database. Results are cached (the planner calls this once per case).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, time, timedelta
from functools import lru_cache
from typing import Any

from rules.policy import PolicyTiming
from rules.timing import CadenceCaps, ContactRules, TimeRange, WeeklyHours

__all__ = [
    "ContactWindows",
    "ContactWindowsError",
    "contact_rules",
    "effective_contact_rules",
    "parse_contact_windows",
    "place",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_ENTRY = re.compile(
    r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$"
)
_REGION = re.compile(r"^(\*|[A-Z]{2}(-[A-Z0-9]{1,3})?)$")


class ContactWindowsError(ValueError):
    """The setting cannot be read; the message says where, in plain words."""


@dataclass(frozen=True)
class ContactWindows:
    """The ``contact_windows`` setting, parsed. Keys are ``"*"``, ``"CC"`` or ``"CC-SUB"``, upper case."""

    business_hours: tuple[tuple[str, WeeklyHours], ...] = ()
    quiet_hours: tuple[tuple[str, TimeRange], ...] = ()
    blackout_dates: tuple[tuple[str, frozenset[date]], ...] = ()


# --- the policy's own statements -> ContactRules ----------------------------------------------------------------


def _policy_weekly(windows: Any) -> WeeklyHours:
    days: list[list[TimeRange]] = [[] for _ in range(7)]
    for window in windows:
        for day in window.days:
            days[day].append(TimeRange(window.start, window.end))
    return WeeklyHours(tuple(tuple(d) for d in days))


@lru_cache(maxsize=256)
def contact_rules(timing: PolicyTiming, ignores: frozenset[str] = frozenset()) -> ContactRules:
    """The timing core's settings for a policy; what the policy leaves unsaid keeps the shipped defaults."""
    default = ContactRules.default()
    general_business = next((r for r in timing.business_hours if not r.regions), None)
    business_by_region = {
        region: _policy_weekly(rule.windows) for rule in timing.business_hours for region in rule.regions
    }
    general_quiet = next((r for r in timing.quiet_hours if not r.regions), None)
    quiet_by_region = {
        region: (TimeRange(rule.start, rule.end),) for rule in timing.quiet_hours for region in rule.regions
    }
    cadence = default.cadence
    if timing.cadence is not None:
        c = timing.cadence
        cadence = CadenceCaps(
            max_per_day=c.per_day,
            max_per_week=c.per_week,
            min_gap=timedelta(seconds=c.min_gap_seconds) if c.min_gap_seconds else None,
            max_per_channel_per_day=default.cadence.max_per_channel_per_day,
        )
    return ContactRules(
        business_hours=_policy_weekly(general_business.windows) if general_business else None,
        business_hours_by_region=business_by_region,
        quiet_hours=(TimeRange(general_quiet.start, general_quiet.end),) if general_quiet else default.quiet_hours,
        quiet_hours_by_region=quiet_by_region,
        skip_holidays=timing.skip_holidays or default.skip_holidays,
        skip_weekends=timing.skip_weekends or default.skip_weekends,
        cadence=cadence,
        override_business_hours="business_hours" in ignores,
        override_weekends="weekends" in ignores,
    )


# --- the setting ------------------------------------------------------------------------------------------------


def _time(text: str, where: str) -> time:
    hours, _, minutes = text.partition(":")
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:
        return time(0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ContactWindowsError(f"{where}: {text!r} is not a time of day")
    return time(h, m)


def _range(text: str, where: str) -> TimeRange:
    left, sep, right = str(text).strip().partition("-")
    if not sep or not re.fullmatch(r"\d{1,2}:\d{2}", left) or not re.fullmatch(r"\d{1,2}:\d{2}", right):
        raise ContactWindowsError(f'{where}: "{text}" should look like "21:00-08:00"')
    return TimeRange(_time(left, where), _time(right, where))


def _weekly(text: str, where: str) -> WeeklyHours:
    """``"mon-fri 09:00-18:00, sat 10:00-14:00"`` -> WeeklyHours (a day range may wrap: ``fri-mon``)."""
    days: list[list[TimeRange]] = [[] for _ in range(7)]
    for part in str(text).split(","):
        match = _HOURS_ENTRY.match(part.strip().lower())
        if not match or match["first"] not in DAYS or (match["last"] and match["last"] not in DAYS):
            raise ContactWindowsError(f'{where}: "{part.strip()}" should look like "mon-fri 09:00-18:00"')
        first = DAYS.index(match["first"])
        last = DAYS.index(match["last"]) if match["last"] else first
        window = TimeRange(_time(match["start"], where), _time(match["end"], where))
        for offset in range((last - first) % 7 + 1):
            days[(first + offset) % 7].append(window)
    return WeeklyHours(tuple(tuple(d) for d in days))


def parse_contact_windows(value: Mapping[str, Any] | None) -> ContactWindows:
    """The setting as stored (JSON) -> ContactWindows; ContactWindowsError when something cannot be read."""
    if value is None:
        return ContactWindows()
    return _parse(json.dumps(value, sort_keys=True, default=str))


@lru_cache(maxsize=64)
def _parse(text: str) -> ContactWindows:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ContactWindowsError('write windows by region: {"*": {"quiet_hours": "21:00-08:00"}}')
    business: list[tuple[str, WeeklyHours]] = []
    quiet: list[tuple[str, TimeRange]] = []
    blackout: list[tuple[str, frozenset[date]]] = []
    for raw_key, entry in sorted(value.items()):
        key = str(raw_key).strip().upper()
        if not _REGION.match(key):
            raise ContactWindowsError(f'"{raw_key}" is not a region: use "*", a country like "US" or "US-FL"')
        if not isinstance(entry, dict):
            raise ContactWindowsError(f'"{raw_key}": write an object with business_hours, quiet_hours, blackout_dates')
        unknown = set(entry) - {"business_hours", "quiet_hours", "blackout_dates"}
        if unknown:
            raise ContactWindowsError(f'"{raw_key}": unknown entry {", ".join(sorted(unknown))}')
        if entry.get("business_hours"):
            business.append((key, _weekly(entry["business_hours"], f'"{raw_key}" business hours')))
        if entry.get("quiet_hours"):
            quiet.append((key, _range(entry["quiet_hours"], f'"{raw_key}" quiet hours')))
        dates: set[date] = set()
        for day in entry.get("blackout_dates") or []:
            try:
                dates.add(date.fromisoformat(str(day)))
            except ValueError:
                raise ContactWindowsError(f'"{raw_key}": blackout date "{day}" should look like "2026-12-25"') from None
        if dates:
            blackout.append((key, frozenset(dates)))
    return ContactWindows(tuple(business), tuple(quiet), tuple(blackout))


def place(country: str | None, region: str | None) -> tuple[str | None, str | None]:
    """("US", "FL") / ("us", "US-FL") -> ("US", "US-FL")."""
    cc = country.strip().upper() if country and country.strip() else None
    if cc is None:
        return None, None
    if not region or not region.strip():
        return cc, None
    sub = region.strip().upper().removeprefix(cc + "-")
    return cc, f"{cc}-{sub}"


def _shadowed(key: str, policy_keys: set[str]) -> bool:
    """A setting for ``key`` that a policy statement for the same place, or a wider one, replaces."""
    return key in policy_keys or key.split("-", 1)[0] in policy_keys


def _merge(
    settings: tuple[tuple[str, Any], ...],
    policy_general: Any,
    policy_regional: Mapping[str, Any],
    policy_speaks_everywhere: bool,
) -> tuple[Any, dict[str, Any]]:
    """(general, by region) for one kind of window: the policy's where it speaks, the settings' elsewhere."""
    if policy_speaks_everywhere:
        return policy_general, dict(policy_regional)
    policy_keys = {k.upper() for k in policy_regional}
    general = next((v for k, v in settings if k == "*"), None)
    by_region = {k: v for k, v in settings if k != "*" and not _shadowed(k, policy_keys)}
    by_region.update({k.upper(): v for k, v in policy_regional.items()})
    return general, by_region


@lru_cache(maxsize=4096)
def _effective(
    windows: ContactWindows,
    timing: PolicyTiming,
    ignores: frozenset[str],
    country: str | None,
    region: str | None,
) -> ContactRules:
    policy = contact_rules(timing, ignores)  # the policy's own reading, incl. cadence, holidays, override
    business_general, business_by_region = _merge(
        windows.business_hours,
        policy.business_hours,
        policy.business_hours_by_region,
        any(not r.regions for r in timing.business_hours),
    )
    quiet_general, quiet_by_region = _merge(
        tuple((k, (v,)) for k, v in windows.quiet_hours),
        policy.quiet_hours,
        policy.quiet_hours_by_region,
        any(not r.regions for r in timing.quiet_hours),
    )
    if quiet_general is None:  # neither the policy nor the settings say: the shipped quiet hours
        quiet_general = ContactRules.default().quiet_hours
    cc, sub = place(country, region)
    places = {"*", cc, sub} - {None}
    blackout = frozenset().union(*(dates for key, dates in windows.blackout_dates if key in places))
    return replace(
        policy,
        business_hours=business_general,
        business_hours_by_region=business_by_region,
        quiet_hours=quiet_general,
        quiet_hours_by_region=quiet_by_region,
        blackout_dates=policy.blackout_dates | blackout,
    )


def effective_contact_rules(
    contact_windows: Mapping[str, Any] | ContactWindows | None,
    timing: PolicyTiming,
    ignores: frozenset[str] = frozenset(),
    *,
    country: str | None = None,
    region: str | None = None,
) -> ContactRules:
    """The ContactRules for one policy and one customer's place: the ``contact_windows`` setting as the default,
    the policy's own statements overriding it (see the module's docstring). ``ignores`` is the urgent override
    of the case (``decision.ignores``). Without ``country`` only the ``*`` blackout dates apply.

    With ``contact_windows=None`` the result is the policy's own rules (:func:`contact_rules`).
    Raises ContactWindowsError when the setting cannot be read.
    """
    if contact_windows is None:
        return contact_rules(timing, ignores)
    windows = contact_windows if isinstance(contact_windows, ContactWindows) else parse_contact_windows(contact_windows)
    return _effective(windows, timing, frozenset(ignores), country, region)
