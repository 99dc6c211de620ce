"""Which time zone(s) is a customer in?

Sources, best first: an explicit setting > the address (postal code, then region) > the phone number
(``phonenumbers``' area-code data: where a number was issued, not where its owner is) > the country's
zones. When the address and the phone disagree, both are kept: a message may then go only when the window is
open in every candidate zone (the CFPB's reading of "the consumer's location" when it is unknown). Candidate
sets that span more than ``MAX_DISTINCT_OFFSETS`` UTC offsets (a US toll-free number, an Australian mobile)
are reported with ``too_many=True`` instead of being intersected into a useless window.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from rules.timing.types import TimezoneGuess

#: More distinct UTC offsets than this among the candidates (at any of the sample instants) = too many.
MAX_DISTINCT_OFFSETS = 3

_DATA = Path(__file__).with_name("data")
# Instants at which zones are compared (both hemispheres' summer and winter).
_SAMPLES = tuple(datetime(2026, month, 15, 12, tzinfo=UTC) for month in (1, 4, 7, 10))

CONFIDENCE = {
    "explicit": 1.0,
    "postal": 0.9,
    "address": 0.85,
    "address_split": 0.6,
    "phone": 0.7,
    "phone_many": 0.5,
    "country": 0.8,
    "country_many": 0.4,
    "conflict": 0.5,
}


# ---------------------------------------------------------------------------------------------- zone data


@functools.lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo | None:
    """The ZoneInfo for an IANA name, or None when the name is unknown (e.g. phonenumbers' Etc/Unknown)."""
    if not name or name == "Etc/Unknown":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@functools.cache
def _zone_tab() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """tzdata's zone.tab: zone -> country, country -> zones (main zone first)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    zone_to_cc: dict[str, str] = {}
    cc_to_zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        cc, name = parts[0], parts[2]
        zone_to_cc[name] = cc
        cc_to_zones.setdefault(cc, []).append(name)
    return zone_to_cc, {cc: tuple(zs) for cc, zs in cc_to_zones.items()}


# Legacy names phonenumbers and old data still use; zone.tab lists only the canonical ones.
_ALIASES = {
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Asia/Katmandu": "Asia/Kathmandu",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "Europe/Kiev": "Europe/Kyiv",
    "Asia/Rangoon": "Asia/Yangon",
    "Atlantic/Faeroe": "Atlantic/Faroe",
    "US/Eastern": "America/New_York",
    "US/Central": "America/Chicago",
    "US/Mountain": "America/Denver",
    "US/Pacific": "America/Los_Angeles",
}


def _canonical(name: str) -> str:
    return _ALIASES.get(name) or name


@functools.lru_cache(maxsize=4096)
def zone_country(name: str) -> str | None:
    """The country a zone belongs to according to tzdata's zone.tab (None for Etc/UTC and the like)."""
    return _zone_tab()[0].get(_ALIASES.get(name, name))


def country_zones(country: str) -> tuple[str, ...]:
    return _zone_tab()[1].get(normalize_country(country) or "", ())


def normalize_country(country: str | None) -> str | None:
    if not country:
        return None
    cc = country.strip().upper()
    return {"UK": "GB"}.get(cc, cc)


def normalize_region(country: str | None, region: str | None) -> str | None:
    """``"US-FL"`` / ``"fl"`` -> ``"FL"`` (the subdivision code alone)."""
    if not region:
        return None
    sub = region.strip().upper()
    cc = normalize_country(country)
    if cc and sub.startswith(cc + "-"):
        sub = sub[len(cc) + 1 :]
    return sub or None


@functools.lru_cache(maxsize=8192)
def _signature(name: str) -> tuple[float, ...] | None:
    tz = zone(name)
    if tz is None:
        return None
    return tuple(s.astimezone(tz).utcoffset().total_seconds() for s in _SAMPLES)  # type: ignore[union-attr]


@functools.lru_cache(maxsize=8192)
def _too_many(zones: tuple[str, ...]) -> bool:
    sigs = [_signature(z) for z in zones]
    known = [s for s in sigs if s is not None]
    return any(len({s[i] for s in known}) > MAX_DISTINCT_OFFSETS for i in range(len(_SAMPLES)))


def zones_too_many(zones: Sequence[str]) -> bool:
    """True when the zones span more than ``MAX_DISTINCT_OFFSETS`` UTC offsets at some time of year."""
    return _too_many(tuple(zones))


def _agree(a: Iterable[str], b: Iterable[str]) -> bool:
    """Do two candidate sets share a zone (or a zone with the same offsets all year)?"""
    sa = {_signature(z) for z in a}
    return any(_signature(z) in sa for z in b)


# ------------------------------------------------------------------------------------- regions and postal


@functools.cache
def _region_zones() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for line in (_DATA / "region_zones.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, *names = line.split()
            table[key] = tuple(names)
    return table


@functools.cache
def _us_postal() -> tuple[dict[str, str], list[tuple[int, int, str]]]:
    prefixes: dict[str, str] = {}
    states: list[tuple[int, int, str]] = []
    for line in (_DATA / "us_postal_zones.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if parts[0] == "@state":
            first, _, last = parts[1].partition("-")
            states.append((int(first), int(last or first), parts[2]))
        else:
            prefixes[parts[0]] = parts[1]
    return prefixes, states


def region_zones(country: str | None, region: str | None) -> tuple[str, ...]:
    """The zones a region uses (main zone first), or () when the region is unknown."""
    cc = normalize_country(country)
    sub = normalize_region(cc, region)
    if not cc or not sub:
        return ()
    return _region_zones().get(f"{cc}-{sub}", ())


def us_state_for_zip(postal_code: str) -> str | None:
    digits = postal_code.strip()[:5]
    if len(digits) < 3 or not digits[:3].isdigit():
        return None
    zip3 = int(digits[:3])
    for first, last, state in _us_postal()[1]:
        if first <= zip3 <= last:
            return state
    return None


def us_zone_for_zip(postal_code: str) -> str | None:
    """Offline ZIP -> zone: the longest prefix in the split-state table, else the state's main zone."""
    digits = postal_code.strip().split("-")[0]
    if len(digits) < 3 or not digits[:5].isdigit():
        return None
    prefixes = _us_postal()[0]
    hit = prefixes.get(digits[:5]) or prefixes.get(digits[:3])
    if hit:
        return hit
    state = us_state_for_zip(digits)
    zones = region_zones("US", state) if state else ()
    return zones[0] if zones else None


# Canadian postal codes: the first letter is the province (and, in Ontario, the part of it). Values are
# (province, zone when the letter settles it). Limits: Quebec's Magdalen Islands and Lower North Shore
# (Atlantic time) are inside G; Northern Ontario (P) spans Eastern and Central; X is NT or NU.
_CA_POSTAL: dict[str, tuple[str, str | None]] = {
    "A": ("NL", None),
    "B": ("NS", "America/Halifax"),
    "C": ("PE", "America/Halifax"),
    "E": ("NB", "America/Moncton"),
    "G": ("QC", "America/Toronto"),
    "H": ("QC", "America/Toronto"),
    "J": ("QC", "America/Toronto"),
    "K": ("ON", "America/Toronto"),
    "L": ("ON", "America/Toronto"),
    "M": ("ON", "America/Toronto"),
    "N": ("ON", "America/Toronto"),
    "P": ("ON", None),
    "R": ("MB", "America/Winnipeg"),
    "S": ("SK", None),
    "T": ("AB", "America/Edmonton"),
    "V": ("BC", None),
    "Y": ("YT", "America/Whitehorse"),
}


def _postal_zones(cc: str, postal_code: str) -> tuple[tuple[str, ...], str | None]:
    """(zones, region found from the postal code)."""
    if cc == "US":
        found = us_zone_for_zip(postal_code)
        return ((found,) if found else ()), us_state_for_zip(postal_code)
    if cc == "CA":
        province, settled = _CA_POSTAL.get(postal_code.strip()[:1].upper(), (None, None))
        return ((settled,) if settled else ()), province
    return (), None


# ------------------------------------------------------------------------------------------------- phone


def _phone_zones(phone: str, country: str | None = None) -> tuple[tuple[str, ...], str | None]:
    # Deferred: phonenumbers' data takes tens of milliseconds to import, and rules/ must import fast.
    import phonenumbers  # type: ignore[import-untyped,unused-ignore]
    from phonenumbers import timezone as phone_timezone  # type: ignore[import-untyped,unused-ignore]

    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return (), None
    zones = tuple(z for z in phone_timezone.time_zones_for_number(number) if zone(z) is not None)
    region: str | None = phonenumbers.region_code_for_number(number)
    # phonenumbers lists a number's zones alphabetically (a Spanish mobile: Atlantic/Canary before Europe/Madrid;
    # a UK mobile: Europe/Guernsey before Europe/London); zone.tab lists a country's main zone first, and the first
    # candidate is the one shown as the customer's zone. The customer's own country ranks first (a UK mobile that
    # phonenumbers files under Guernsey), then the number's; among equals a zone's own name before its aliases.
    ranked = [*country_zones(country or ""), *country_zones(region or "")]
    main_first = {name: i for i, name in reversed(list(enumerate(ranked)))}

    def rank(z: str) -> tuple[int, int, int]:
        canonical = _canonical(z)
        return (main_first.get(z, main_first.get(canonical, len(ranked))), 0 if z == canonical else 1,
                zones.index(z))

    zones = tuple(sorted(zones, key=rank))
    return zones, region


# ------------------------------------------------------------------------------------------------ detect


def detect_timezone(
    *,
    explicit: str | None = None,
    country: str | None = None,
    region: str | None = None,
    postal_code: str | None = None,
    phone: str | None = None,
) -> TimezoneGuess:
    """Guess the customer's zone(s) from what is known about them; see the module docstring."""
    notes: list[str] = []
    if explicit:
        if zone(explicit) is not None:
            return TimezoneGuess((explicit,), "explicit", CONFIDENCE["explicit"])
        notes.append(f"explicit timezone {explicit!r} is not a known IANA zone; ignored")

    cc = normalize_country(country)
    address: tuple[str, ...] = ()
    source = "unknown"
    confidence = 0.0
    if cc and postal_code:
        address, postal_region = _postal_zones(cc, postal_code)
        if address:
            source, confidence = "postal", CONFIDENCE["postal"]
            given = normalize_region(cc, region)
            if given and postal_region and given != postal_region:
                notes.append(f"postal code {postal_code} is in {cc}-{postal_region}, not {cc}-{given}")
        elif postal_region and not region:
            region = postal_region
    if not address and cc and region:
        candidates = region_zones(cc, region)
        if len(candidates) == 1:
            address, source, confidence = candidates, "address", CONFIDENCE["address"]
        elif candidates:
            address, source, confidence = candidates, "address", CONFIDENCE["address_split"]
            notes.append(
                f"{cc}-{normalize_region(cc, region)} spans several zones; a postal code would settle it"
            )

    phone_zones: tuple[str, ...] = ()
    if phone:
        phone_zones, _ = _phone_zones(phone, cc)
        if not phone_zones:
            notes.append("phone number gives no zone")

    if address:
        if phone_zones and not zones_too_many(phone_zones) and not _agree(address, phone_zones):
            union = tuple(dict.fromkeys(address + phone_zones))
            if not zones_too_many(union):
                notes.append("address and phone disagree; both kept")
                return TimezoneGuess(
                    union, source, min(confidence, CONFIDENCE["conflict"]), note=_join(notes)
                )
            notes.append("phone zones disagree with the address and are too far apart; phone ignored")
        return _finish(address, source, confidence, notes)

    phone_guess: TimezoneGuess | None = None
    if phone_zones:
        if not zones_too_many(phone_zones):
            conf = CONFIDENCE["phone"] if len(phone_zones) == 1 else CONFIDENCE["phone_many"]
            return _finish(phone_zones, "phone", conf, notes)
        notes.append(f"phone number maps to {len(phone_zones)} zones")
        phone_guess = TimezoneGuess(phone_zones, "phone", 0.1, too_many=True)

    if cc:
        zones = country_zones(cc)
        if zones:
            conf = CONFIDENCE["country"] if len(zones) == 1 else CONFIDENCE["country_many"]
            guess = _finish(zones, "country", conf, notes)
            if not guess.too_many or phone_guess is None:
                return guess
        else:
            notes.append(f"no zones known for country {cc!r}")

    if phone_guess is not None:
        notes.append("needs an address or an explicit timezone")
        return TimezoneGuess(phone_guess.zones, "phone", 0.1, too_many=True, note=_join(notes))
    notes.append("no usable source")
    return TimezoneGuess((), "unknown", 0.0, note=_join(notes))


def _finish(zones: tuple[str, ...], source: str, confidence: float, notes: list[str]) -> TimezoneGuess:
    if zones_too_many(zones):
        notes.append(f"{len(zones)} candidate zones span too many UTC offsets; needs a better source")
        return TimezoneGuess(zones, source, min(confidence, 0.1), too_many=True, note=_join(notes))
    return TimezoneGuess(zones, source, confidence, note=_join(notes))


def _join(notes: list[str]) -> str | None:
    return "; ".join(notes) or None


def known_zone_names() -> frozenset[str]:
    return frozenset(available_timezones())
