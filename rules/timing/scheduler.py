"""``next_send_time``: the first instant a message may go, and what held it back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rules.timing.cadence import Cap, blocked_by_caps, next_free
from rules.timing.legal import LegalCap, LegalRule, legal_rules_for
from rules.timing.types import ContactHistory, ContactRules, Scheduled
from rules.timing.windows import Table, ZoneTable, joint_table, reasons_of, to_datetime, zone_table
from rules.timing.zones import normalize_country, normalize_region, zone, zone_country, zones_too_many

_DAY = 86400.0
_EMPTY_HISTORY = ContactHistory()


@dataclass(frozen=True)
class _Plan:
    """Everything about one (rules, place, channel, zones) that does not depend on the instant."""

    table: Table | None
    caps: tuple[Cap, ...]
    refusal: str | None = None
    #: results per closed segment (UTC day, segment index), ignoring cadence: (send_at as seconds, result)
    answers: dict[tuple[int, int], tuple[float, Scheduled | None]] = field(
        default_factory=dict, compare=False
    )


_PLANS: dict[tuple[object, ...], _Plan] = {}


def _caps(rules: ContactRules, channel: str, legal: Sequence[LegalRule]) -> tuple[Cap, ...]:
    c = rules.cadence
    caps: list[Cap] = []
    if c.max_per_day is not None:
        caps.append(Cap(c.max_per_day, _DAY))
    if c.max_per_week is not None:
        caps.append(Cap(c.max_per_week, 7 * _DAY))
    if c.min_gap is not None and c.min_gap > timedelta(0):
        caps.append(Cap(1, c.min_gap.total_seconds()))
    if c.max_per_channel_per_day is not None:
        caps.append(Cap(c.max_per_channel_per_day, _DAY, frozenset({channel})))
    seen: set[LegalCap] = set()
    for rule in legal:
        for cap in rule.caps:
            if channel in cap.channels and cap not in seen:
                seen.add(cap)
                caps.append(Cap(cap.max_messages, cap.period.total_seconds(), cap.channels, legal=True))
    return tuple(caps)


def _plan(
    rules: ContactRules, country: str | None, region: str | None, channel: str, zones: tuple[str, ...]
) -> _Plan:
    if not zones:
        return _Plan(None, (), "no timezone known for the customer; needs an explicit zone, address or phone")
    unknown = [z for z in zones if zone(z) is None]
    if unknown:
        return _Plan(None, (), f"unknown timezone(s) {', '.join(unknown)}; needs a better source")
    if zones_too_many(zones):
        return _Plan(
            None,
            (),
            f"{len(zones)} candidate zones span too many UTC offsets; needs an address "
            "or an explicit timezone",
        )
    cc = normalize_country(country)
    sub = normalize_region(cc, region) if cc else None
    business_on = not rules.override_business_hours
    skip_weekends = rules.skip_weekends and not rules.override_weekends
    tables: list[ZoneTable] = []
    legal: list[LegalRule] = []
    for name in dict.fromkeys(zones):
        zcc = cc or zone_country(name)
        zsub = sub if cc else None
        legal_all = legal_rules_for(zcc, zsub)
        table = zone_table(
            name,
            zcc,
            zsub,
            tuple(rule for rule in legal_all if rule.binds(channel)),
            rules.quiet_hours_for(zcc, zsub),
            rules.business_hours_for(zcc, zsub) if business_on else None,
            rules.skip_holidays,
            skip_weekends,
            rules.blackout_dates,
        )
        tables.append(table)
        legal.extend(legal_all)
    caps = _caps(rules, channel, legal)
    for cap in caps:
        if cap.max_messages < 1:
            return _Plan(None, (), "a cadence cap of 0 allows no message")
    return _Plan(joint_table(tuple(tables)), caps)


def _get_plan(
    rules: ContactRules, country: str | None, region: str | None, channel: str, zones: tuple[str, ...]
) -> _Plan:
    key = (rules, country, region, channel, zones)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 10_000:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(rules, country, region, channel, zones)
    return plan


def next_send_time(
    earliest: datetime,
    zones: Sequence[str],
    channel: str,
    rules: ContactRules,
    *,
    country: str | None = None,
    region: str | None = None,
    history: ContactHistory = _EMPTY_HISTORY,
    horizon: timedelta = timedelta(days=30),
) -> Scheduled:
    """The first instant >= ``earliest`` at which a message on ``channel`` may go.

    The instant must be open in every zone of ``zones`` (legal window, quiet hours, business hours, holidays,
    weekends, blackouts, each in that zone's local time) and keep every cadence cap given ``history``
    (messages sent or already scheduled, on any channel). ``country`` / ``region`` choose the legal rules,
    holidays, weekends and regional hours; without a country, each zone's own country (tzdata) is used.
    Returns ``send_at`` in UTC, or ``None`` with a note when there is no such instant within ``horizon``
    or the zones are unusable (none, unknown, or too many).
    """
    if earliest.tzinfo is None:
        raise ValueError("earliest must be timezone-aware")
    channel = channel.lower()
    zones_key = zones if type(zones) is tuple else tuple(zones)
    plan = _PLANS.get((rules, country, region, channel, zones_key))
    if plan is None:
        plan = _get_plan(rules, country, region, channel, zones_key)
    table = plan.table
    if table is None:
        return Scheduled(None, (), plan.refusal)

    e = earliest.timestamp()
    limit = e + horizon.total_seconds()
    blocked: list[tuple[float, float]] = []
    sent = history.sent
    if sent and plan.caps:
        records = sorted([(r.at.timestamp(), r.channel.lower()) for r in sent])
        blocked = blocked_by_caps(plan.caps, records, since=e)

    # Fast path: without cadence, the answer is a property of the segment holding `earliest` (cached per
    # segment); it stands when no cadence-blocked interval touches [earliest, answer].
    k = int(e // _DAY)
    segs = table.segments(k)
    i = 0
    while segs[i][1] <= e:
        i += 1
    if segs[i][2] == 0:
        if not blocked or not any(s < e < en for s, en in blocked):
            return _now(earliest.astimezone(UTC))
    else:
        cached = plan.answers.get((k, i))
        if cached is None:
            if len(plan.answers) > 100_000:
                plan.answers.clear()
            cached = plan.answers[(k, i)] = _answer(table, k, i)
        found0, result = cached
        if result is not None and found0 <= limit and not any(s <= found0 and en > e for s, en in blocked):
            return result

    found = _search(table, blocked, e, limit)
    if found is None:
        return Scheduled(
            None,
            reasons_of(table.deferred_by(e, limit, blocked)),
            f"no allowed time within {horizon} of {earliest.astimezone(UTC).isoformat()}",
        )
    if found == e:
        return _now(earliest.astimezone(UTC))
    return Scheduled(to_datetime(found), reasons_of(table.deferred_by(e, found, blocked)))


_NEW = object.__new__


def _now(send_at: datetime) -> Scheduled:
    """``Scheduled(send_at, ())``, built without the frozen dataclass's per-field ``object.__setattr__``
    (this is the hottest line of the scheduler)."""
    result: Scheduled = _NEW(Scheduled)
    result.__dict__.update(send_at=send_at, reasons=(), note=None)
    return result


def _answer(table: Table, k: int, i: int) -> tuple[float, Scheduled | None]:
    hit = table.answer(k, i)
    if hit is None:
        return float("inf"), None
    return hit[0], Scheduled(to_datetime(hit[0]), reasons_of(hit[1]))


def _search(table: Table, blocked: Sequence[tuple[float, float]], e: float, limit: float) -> float | None:
    """The first instant >= e open in the table and outside every cadence-blocked interval."""
    t: float | None = e
    while t is not None and t <= limit:
        t = table.next_open(t, limit)
        if t is None or not blocked:
            return t
        nt = next_free(blocked, t)
        if nt == t:
            return t
        t = nt
    return None
