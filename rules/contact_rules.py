"""One source of contact rules: the planner schedules by them and the dispatcher checks them again at send time.

:func:`contact_rules_for` turns the policy's timing statements, the merchant's ``contact_windows`` setting, the
case's :class:`Override` and the customer's place into the timing core's ContactRules. Whatever a plan decided,
a worker sending the message later (or an operator's "send now") reaches the same rules, because the override
travels with the message (``Override.as_dict`` is what the outbox row stores).

Nothing here lifts quiet hours or a legal window: an override may lift business hours and weekends (a policy's
``override ... : ignore business hours, weekends``), and an operator's "send the next step now" also holidays,
blackout dates and the cadence caps the merchant chose; the legal caps and the legal holiday closures stay, because
the timing core adds them from the law itself (``rules.timing.legal``).

:func:`held_by` names, for each reason that deferred a message, where its rule came from: a policy line, the
merchant's settings (and for which region), Recoup's shipped defaults, or the law.

Pure: no Flask, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from rules.contact_settings import ContactWindows, effective_contact_rules, parse_contact_windows, place
from rules.policy import CompiledPolicy, PolicyTiming
from rules.timing import CadenceCaps, ContactRules
from rules.timing.legal import legal_rules_for
from rules.timing.zones import normalize_country, normalize_region
from rules.vocabulary import POLICY_LIFTS  # what a policy's override may lift, shared with the DSL's validator

__all__ = [
    "NEVER_LIFTED",
    "NO_OVERRIDE",
    "NO_POLICY_TIMING",
    "POLICY_LIFTS",
    "SEND_NOW",
    "HeldBy",
    "Override",
    "OverrideError",
    "contact_rules_for",
    "held_by",
    "policy_override",
]

#: what an operator's "send the next step now" lifts: the merchant's own timing preferences, not the law's
SEND_NOW = frozenset({"business_hours", "weekends", "holidays", "blackout", "cadence"})
#: what nothing lifts, ever
NEVER_LIFTED = frozenset({"quiet_hours", "legal_window"})
_LIFTABLE = POLICY_LIFTS | SEND_NOW


class OverrideError(ValueError):
    """An override that would lift what may not be lifted (quiet hours, a legal window) or names nothing known."""


@dataclass(frozen=True)
class Override:
    """What a message's contact rules may ignore, and who said so: the policy's ``override`` statements that held
    (their ``lines``), or an operator who asked to send now (``by``). Empty: the rules as written."""

    ignores: frozenset[str] = frozenset()
    lines: tuple[int, ...] = ()
    by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignores", frozenset(self.ignores))
        forbidden = self.ignores & NEVER_LIFTED
        if forbidden:
            raise OverrideError(f"{', '.join(sorted(forbidden))} can never be overridden")
        unknown = self.ignores - _LIFTABLE
        if unknown:
            raise OverrideError(f"unknown override {', '.join(sorted(unknown))}; known: {', '.join(sorted(_LIFTABLE))}")

    def __bool__(self) -> bool:
        return bool(self.ignores)

    def as_dict(self) -> dict[str, Any] | None:
        """What an outbox row stores (JSON); None for no override."""
        if not self.ignores:
            return None
        stored: dict[str, Any] = {"ignores": sorted(self.ignores)}
        if self.lines:
            stored["lines"] = list(self.lines)
        if self.by:
            stored["by"] = self.by
        return stored

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any] | None) -> Override:
        if not stored:
            return NO_OVERRIDE
        return cls(frozenset(stored.get("ignores") or ()), tuple(int(n) for n in stored.get("lines") or ()),
                   stored.get("by") or None)


NO_OVERRIDE = Override()
#: the timing of a message no policy wrote (Recoup's shipped rules apply)
NO_POLICY_TIMING = PolicyTiming((), (), False, False, None, ())


def policy_override(policy: CompiledPolicy, facts: Mapping[str, Any], ignores: frozenset[str]) -> Override:
    """The override a policy decided for these facts (``Decision.ignores``), with the lines of the ``override``
    statements that held. ``facts`` must carry ``decline`` as ``policy.decide`` saw them."""
    if not ignores:
        return NO_OVERRIDE
    lines = tuple(c.line for c in policy.explain(facts) if c.kind == "override" and c.value)
    return Override(ignores, lines)


def _windows(contact_windows: Mapping[str, Any] | ContactWindows | None) -> ContactWindows | None:
    if contact_windows is None or isinstance(contact_windows, ContactWindows):
        return contact_windows
    return parse_contact_windows(contact_windows)


def contact_rules_for(
    timing: PolicyTiming,
    contact_windows: Mapping[str, Any] | ContactWindows | None,
    override: Override = NO_OVERRIDE,
    *,
    country: str | None,
    region: str | None,
) -> ContactRules:
    """THE contact rules of one message: the policy's timing over the merchant's ``contact_windows`` setting (see
    ``rules.contact_settings``) for the customer's place, with what ``override`` lifts lifted. Quiet hours and the
    legal windows always stay. Raises ContactWindowsError when the setting cannot be read."""
    return _rules_for(_windows(contact_windows), timing, override.ignores, country, region)


@lru_cache(maxsize=4096)
def _rules_for(
    windows: ContactWindows | None, timing: PolicyTiming, ignores: frozenset[str], country: str | None,
    region: str | None,
) -> ContactRules:
    rules = effective_contact_rules(windows, timing, ignores & POLICY_LIFTS, country=country, region=region)
    lifted: dict[str, Any] = {}
    if "holidays" in ignores:
        lifted["skip_holidays"] = False
    if "blackout" in ignores:
        lifted["blackout_dates"] = frozenset()
    if "cadence" in ignores:
        lifted["cadence"] = CadenceCaps()  # the legal caps stay: the timing core adds them from the law
    return replace(rules, **lifted) if lifted else rules


# --- why a message waited -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldBy:
    """One reason a message waited (``rules.timing.REASONS``) and where that rule came from: ``source`` is
    ``policy`` (``line``), ``settings`` (``detail``: the region of the setting), ``default`` (Recoup's shipped
    rule) or ``law`` (``detail``: the citation)."""

    reason: str
    source: str
    line: int | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "source": self.source}
        if self.line is not None:
            out["line"] = self.line
        if self.detail:
            out["detail"] = self.detail
        return out


def held_by(
    reasons: Iterable[str],
    timing: PolicyTiming,
    contact_windows: Mapping[str, Any] | ContactWindows | None,
    *,
    country: str | None,
    region: str | None,
    channel: str,
) -> tuple[HeldBy, ...]:
    """For each reason (as ``Scheduled.reasons`` gives them), the rule's source, in the same order."""
    windows = _windows(contact_windows)
    cc, sub = place(country, region)
    sub_code = sub.split("-", 1)[1] if sub else None
    return tuple(_source(r, timing, windows, cc, sub_code, channel) for r in reasons)


def _source(
    reason: str, timing: PolicyTiming, windows: ContactWindows | None, cc: str | None, sub: str | None, channel: str
) -> HeldBy:
    if reason == "legal_window":
        return _legal(cc, sub, channel)
    if reason in ("quiet_hours", "business_hours"):
        rule = timing.quiet_hours_for(cc, sub) if reason == "quiet_hours" else timing.business_hours_for(cc, sub)
        if rule is not None:
            return HeldBy(reason, "policy", rule.line)
        table = (windows.quiet_hours if reason == "quiet_hours" else windows.business_hours) if windows else ()
        key = _most_specific_setting(tuple(k for k, _ in table), cc, sub)
        if key is not None:
            return HeldBy(reason, "settings", detail=key)
        return HeldBy(reason, "default")
    if reason in ("holiday", "weekend"):
        line = dict(timing.skip_lines).get("holidays" if reason == "holiday" else "weekends")
        return HeldBy(reason, "policy", line) if line is not None else HeldBy(reason, "default")
    if reason == "cadence":
        return HeldBy(reason, "policy", timing.cadence.line) if timing.cadence else HeldBy(reason, "default")
    if reason == "blackout":
        return HeldBy(reason, "settings")
    return HeldBy(reason, "default")


def _most_specific_setting(keys: tuple[str, ...], cc: str | None, sub: str | None) -> str | None:
    for wanted in (f"{cc}-{sub}" if cc and sub else None, cc, "*"):
        if wanted and wanted in keys:
            return wanted
    return None


def _legal(cc: str | None, sub: str | None, channel: str) -> HeldBy:
    country = normalize_country(cc)
    binding = legal_rules_for(country, normalize_region(country, sub) if country and sub else None)
    sources = [rule.source for rule in binding if rule.binds(channel)]
    return HeldBy("legal_window", "law", detail="; ".join(dict.fromkeys(sources)) or None)
