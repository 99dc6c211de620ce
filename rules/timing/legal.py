"""Legal contact windows and legal caps, loaded from ``data/legal_windows.toml`` (data, not code).

They are floors: the scheduler intersects them with whatever a policy says, and nothing widens them.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rules.timing.types import TimeRange, WeeklyHours

_FILE = Path(__file__).with_name("data") / "legal_windows.toml"
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REST_OF_WORLD = "*"


@dataclass(frozen=True)
class LegalCap:
    """At most ``max_messages`` on ``channels`` within any ``period``."""

    channels: frozenset[str]
    max_messages: int
    period: timedelta


@dataclass(frozen=True)
class LegalRule:
    key: str
    hours: WeeklyHours
    closed_on_public_holidays: bool
    channels: frozenset[str] | None
    caps: tuple[LegalCap, ...]
    source: str

    def binds(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


def _weekly(days: dict[str, list[str]]) -> WeeklyHours:
    per_day: list[tuple[TimeRange, ...]] = [()] * 7
    for name, ranges in days.items():
        parsed = tuple(TimeRange.parse(r) for r in ranges)
        if name == "all":
            targets: range | tuple[int, ...] = range(7)
        elif name == "weekdays":
            targets = range(5)
        elif name in _DAY_NAMES:
            targets = (_DAY_NAMES.index(name),)
        else:
            raise ValueError(f"{_FILE.name}: unknown day {name!r}")
        for i in targets:
            per_day[i] = per_day[i] + parsed
    return WeeklyHours(tuple(per_day))


def parse_rules(doc: dict[str, Any]) -> dict[str, LegalRule]:
    table: dict[str, LegalRule] = {}
    for raw in doc.get("rule", []):
        caps = tuple(
            LegalCap(frozenset(c["channels"]), int(c["max"]), timedelta(hours=float(c["hours"])))
            for c in raw.get("caps", [])
        )
        channels = raw.get("channels")
        for key in raw["keys"]:
            key = key.upper()
            if key in table:
                raise ValueError(f"{_FILE.name}: {key} defined twice")
            table[key] = LegalRule(
                key=key,
                hours=_weekly(raw["days"]),
                closed_on_public_holidays=bool(raw.get("closed_on_public_holidays", False)),
                channels=frozenset(channels) if channels is not None else None,
                caps=caps,
                source=str(raw["source"]),
            )
    if REST_OF_WORLD not in table:
        raise ValueError(f"{_FILE.name}: the rest-of-world rule '*' is required")
    return table


@functools.cache
def legal_rules() -> dict[str, LegalRule]:
    with _FILE.open("rb") as fh:
        return parse_rules(tomllib.load(fh))


@functools.lru_cache(maxsize=1024)
def legal_rules_for(country: str | None, subdivision: str | None) -> tuple[LegalRule, ...]:
    """Every rule binding a customer in ``country`` / ``subdivision`` (normalised codes): the country's rule
    (or the rest-of-world rule) plus the subdivision's."""
    table = legal_rules()
    found = [table.get(country or "", table[REST_OF_WORLD])]
    if country and subdivision:
        sub = table.get(f"{country}-{subdivision}")
        if sub is not None:
            found.append(sub)
    return tuple(found)
