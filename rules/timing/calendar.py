"""Which local dates are public holidays or weekend days, per country (and subdivision).

Holidays come from the pinned ``holidays`` package, one calendar per (country, subdivision, year), cached.
Weekends come from the table below (where the week is not Saturday-Sunday, or changed), else from the
``holidays`` country class, else Saturday-Sunday.
"""

from __future__ import annotations

import functools
import logging
from datetime import date
from typing import Any

logger = logging.getLogger(__name__)

SAT_SUN = frozenset({5, 6})
FRI_SAT = frozenset({4, 5})

#: country -> ((first year it applies, weekend weekdays 0=Mon..6=Sun), ...), newest last.
#: Sources: each country's labour law as summarised by timeanddate.com "Weekend around the world";
#: the UAE moved federal government (and most private employers) to Saturday-Sunday on 1 Jan 2022 (Sharjah
#: keeps Friday as well, not modelled); Saudi Arabia, Qatar, Kuwait, Bahrain, Oman, Jordan, Egypt, Iraq,
#: Algeria, Sudan, Yemen, Libya, Syria, Bangladesh, Maldives rest Friday-Saturday; Israel Friday-Saturday
#: (Friday a short day, treated as weekend); Iran and Afghanistan rest on Friday only (Afghanistan
#: Thursday-Friday before 2013 is not modelled); Nepal Saturday only; Brunei Friday and Sunday.
WEEKENDS: dict[str, tuple[tuple[int, frozenset[int]], ...]] = {
    "AE": ((0, FRI_SAT), (2022, SAT_SUN)),
    "SA": ((0, FRI_SAT),),
    "QA": ((0, FRI_SAT),),
    "KW": ((0, FRI_SAT),),
    "BH": ((0, FRI_SAT),),
    "OM": ((0, FRI_SAT),),
    "JO": ((0, FRI_SAT),),
    "EG": ((0, FRI_SAT),),
    "IQ": ((0, FRI_SAT),),
    "DZ": ((0, FRI_SAT),),
    "SD": ((0, FRI_SAT),),
    "YE": ((0, FRI_SAT),),
    "LY": ((0, FRI_SAT),),
    "SY": ((0, FRI_SAT),),
    "BD": ((0, FRI_SAT),),
    "MV": ((0, FRI_SAT),),
    "IL": ((0, FRI_SAT),),
    "PS": ((0, FRI_SAT),),
    "IR": ((0, frozenset({4})),),
    "AF": ((0, frozenset({4})),),
    "NP": ((0, frozenset({5})),),
    "BN": ((0, frozenset({4, 6})),),
}


@functools.lru_cache(maxsize=4096)
def _calendar(country: str, subdivision: str | None, year: int) -> Any:
    """The ``holidays`` calendar, or None for a country it does not know. An unknown subdivision falls
    back to the national calendar."""
    import holidays  # deferred: importing it costs tens of milliseconds, and rules/ must import fast

    try:
        return holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        if subdivision is None:
            return None
        logger.debug("holidays has no subdivision %s-%s; using national holidays", country, subdivision)
        return _calendar(country, None, year)


@functools.lru_cache(maxsize=4096)
def holiday_dates(country: str | None, subdivision: str | None, year: int) -> frozenset[date]:
    """Public holidays (national + the subdivision's) in ``year``; empty for unknown countries."""
    if not country:
        return frozenset()
    calendar = _calendar(country, subdivision, year)
    return frozenset(calendar.keys()) if calendar is not None else frozenset()


def is_holiday(country: str | None, subdivision: str | None, day: date) -> bool:
    return day in holiday_dates(country, subdivision, day.year)


@functools.lru_cache(maxsize=4096)
def weekend_days(country: str | None, year: int) -> frozenset[int]:
    """Weekend weekdays (0 = Monday) for ``country`` in ``year``."""
    if country in WEEKENDS:
        chosen = SAT_SUN
        for since, days in WEEKENDS[country]:
            if year >= since:
                chosen = days
        return chosen
    calendar = _calendar(country, None, year) if country else None
    found = getattr(calendar, "weekend", None)
    if found:
        return frozenset(int(d) for d in found)
    return SAT_SUN


def is_weekend(country: str | None, day: date) -> bool:
    return day.weekday() in weekend_days(country, day.year)
