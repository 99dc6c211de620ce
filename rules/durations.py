"""Durations, the two ways Recoup writes them, read by one parser each and nowhere else.

- The policy language's short form, as a merchant writes it: ``15m``, ``2h``, ``3d``, ``1w`` (:func:`parse_short`
  gives a :class:`Duration`, kept as written so the formatter prints it back unchanged).
- ISO 8601, the form a plan stores and facts carry: ``P14D``, ``PT2H``, ``P1DT6H``, ``P2W`` (:func:`parse_iso`
  gives a ``timedelta``; :func:`iso` writes one back).

Months and years have no fixed length, so neither form has them. Bad input raises :class:`DurationError` (a
``ValueError``) whose message says what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

__all__ = ["MAX_AMOUNT", "UNITS", "Duration", "DurationError", "iso", "parse_iso", "parse_short"]

#: seconds in each unit of the short form
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: the largest number a short duration may carry: ``10000m`` is a week, ``10000w`` already absurd
MAX_AMOUNT = 10_000

_SHORT = re.compile(r"(\d+)([mhdw])")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)


class DurationError(ValueError):
    """A duration that cannot be read; the message quotes it and says what a good one looks like."""


@dataclass(frozen=True)
class Duration:
    """``15m``, ``2h``, ``3d``, ``1w``: an amount and its unit, as written."""

    amount: int
    unit: str  # one of UNITS

    @property
    def seconds(self) -> int:
        return self.amount * UNITS[self.unit]

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def iso(self) -> str:
        """ISO 8601, the form the plan uses: P2D, PT15M, PT1H (weeks as days: 1w -> P7D)."""
        if self.unit == "w":
            return f"P{self.amount * 7}D"
        if self.unit == "d":
            return f"P{self.amount}D"
        return f"PT{self.amount}{self.unit.upper()}"


def parse_short(text: str) -> Duration:
    """``"15m"`` -> Duration(15, "m"). The number is at most :data:`MAX_AMOUNT`."""
    match = _SHORT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise DurationError(f'"{text}" is not a duration: write a number and a unit, like 15m, 2h, 3d or 1w')
    amount = int(match[1])
    if amount > MAX_AMOUNT:
        raise DurationError(f'"{text}" is too long a wait')
    return Duration(amount, match[2])


@lru_cache(maxsize=1024)
def parse_iso(text: str) -> timedelta:
    """``"P1DT6H"`` -> timedelta(days=1, hours=6). Weeks, days, hours, minutes and seconds; no months or years."""
    if not isinstance(text, str):
        raise DurationError(f"not an ISO 8601 duration: {text!r} (write one like P14D, PT2H or P1DT6H)")
    match = _ISO.fullmatch(text)
    if match is None or text == "P":
        hint = " (months and years have no fixed length)" if re.search(r"P[^T]*[MY]", text) else ""
        raise DurationError(f"not an ISO 8601 duration: {text!r}{hint}; write one like P14D, PT2H or P1DT6H")
    parts = {unit: int(value) for unit, value in match.groupdict().items() if value}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def iso(delta: timedelta) -> str:
    """A timedelta as the plan writes durations: ``P14D``, ``PT2H``, ``P1DT6H``; zero is ``PT0S``."""
    if delta < timedelta(0):
        raise DurationError(f"a duration cannot be negative: {delta}")
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    if not days and not clock:
        return "PT0S"
    return f"P{f'{days}D' if days else ''}{f'T{clock}' if clock else ''}"
