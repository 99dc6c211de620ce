"""Policy + facts -> plan (DESIGN.md's Plan JSON). Pure: the same facts always give the same plan.

The compiled policy decides segment, offers and steps; this module adds what depends on the case: the decline
reason (rules.declines), the holdout and A/B draws (a hash of the transaction id, so they never change between
runs), the customer's timezone and each step's send time (rules.timing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from rules.contact_rules import contact_rules_for, held_by, policy_override
from rules.policy import CompiledPolicy, CompiledStep
from rules.timing import (
    ContactHistory,
    ContactRules,
    SentRecord,
    detect_timezone,
    next_send_time,
)


class FactsError(ValueError):
    """The facts cannot be planned (not an object, or no usable time at all)."""


# --- decline ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _classify(code: str | None, advice: str | None, gateway: str) -> dict[str, str | None]:
    from rules.declines import classify_decline  # the decline taxonomy is optional for pure DSL use

    info = classify_decline(code, advice, gateway=gateway)
    return {"reason": str(info.reason.value), "kind": str(info.kind.value), "code": code}


def decline_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """``decline.reason`` / ``.kind`` / ``.code``: given in the facts, or derived from the decline code."""
    given = facts.get("decline")
    if isinstance(given, Mapping) and given.get("reason"):
        return dict(given)
    txn = facts.get("transaction")
    txn = txn if isinstance(txn, Mapping) else {}
    code = txn.get("decline_code")
    advice = txn.get("merchant_advice_code")
    gateway = txn.get("gateway")
    return _classify(
        str(code) if code is not None else None,
        str(advice) if advice is not None else None,
        gateway if isinstance(gateway, str) and gateway else "nmi",
    )


# --- deterministic draws ------------------------------------------------------------------------------------


def _draw(*parts: str) -> int:
    """A number in [0, 10000) from the parts: stable across runs, processes and machines."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def in_holdout(policy: CompiledPolicy, transaction_id: str) -> bool:
    share = policy.holdout_percent
    return share > 0 and _draw("holdout", policy.name, transaction_id) < share * 100


def choose_variant(policy: CompiledPolicy, step: CompiledStep, transaction_id: str) -> str | None:
    if not step.variants:
        return None
    point = Decimal(_draw("variant", policy.name, str(step.line), step.template or "", transaction_id)) / 100
    total = Decimal(0)
    for name, weight in step.variants:
        total += weight
        if point < total:
            return name
    return step.variants[-1][0]


def _send_time(
    earliest: datetime,
    zones: tuple[str, ...],
    channel: str,
    rules: ContactRules,
    *,
    country: str | None,
    region: str | None,
    sent: tuple[SentRecord, ...],
) -> tuple[datetime | None, tuple[str, ...], str | None]:
    """The one call into the timing core: (send_at UTC or None, what deferred it, why there is none)."""
    scheduled = next_send_time(
        earliest, zones, channel, rules, country=country, region=region, history=ContactHistory(sent=sent)
    )
    return scheduled.send_at, tuple(scheduled.reasons), scheduled.note


# --- the plan -----------------------------------------------------------------------------------------------


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _history(facts: Mapping[str, Any]) -> tuple[SentRecord, ...]:
    """Messages already sent to the customer (facts.history.sent: [{"at": ISO, "channel": "sms"}])."""
    history = facts.get("history")
    raw = history.get("sent") if isinstance(history, Mapping) else None
    records: list[SentRecord] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping):
            at, channel = _instant(item.get("at")), _text(item.get("channel"))
            if at and channel:
                records.append(SentRecord(at, channel))
    return tuple(records)


def plan(
    policy: CompiledPolicy,
    facts: Mapping[str, Any],
    *,
    version: int | None = None,
    explain: bool = False,
    contact_windows: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The plan for one case. Raises FactsError only when the facts are not an object or carry no time.

    ``contact_windows`` is the merchant's setting of that name (business hours, quiet hours and blackout dates by
    region): the default that the policy's own timing statements override (``rules.contact_settings``). Without
    it, the policy's statements and the shipped defaults alone decide.
    """
    if not isinstance(facts, Mapping):
        raise FactsError("facts must be a JSON object")
    customer = facts.get("customer")
    customer = customer if isinstance(customer, Mapping) else {}
    txn = facts.get("transaction")
    txn = txn if isinstance(txn, Mapping) else {}
    now = _instant(facts.get("now"))
    failed_at = _instant(txn.get("failed_at"))
    start = failed_at or now
    if start is None:
        raise FactsError('facts need "now" or "transaction.failed_at" as an ISO 8601 time with a zone')
    now = now or start

    enriched = dict(facts)
    decline = decline_facts(facts)
    enriched["decline"] = decline
    decision = policy.decide(enriched)
    transaction_id = str(txn.get("id") or "")

    guess = detect_timezone(
        explicit=_text(customer.get("timezone")),
        country=_text(customer.get("country")),
        region=_text(customer.get("region")),
        postal_code=_text(customer.get("postal_code")),
        phone=_text(customer.get("phone")),
    )
    zones = tuple(guess.zones) if guess.usable else ()
    country, region = _text(customer.get("country")), _text(customer.get("region"))
    opted_out = {c for c in customer.get("opted_out") or () if isinstance(c, str)}
    override = policy_override(policy, enriched, decision.ignores)
    # the same function the dispatcher checks with at send time (the override travels with each message)
    rules = contact_rules_for(policy.timing, contact_windows, override, country=country, region=region)

    holdout = in_holdout(policy, transaction_id)
    steps: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    sent = _history(facts)
    for step in () if holdout else decision.steps:
        earliest = max(start + timedelta(seconds=step.after_seconds), now)
        if step.action == "retry_payment":
            # a charge attempt is not a contact: no contact windows, but it goes through the retry budget
            steps.append(
                {
                    "n": len(steps) + 1,
                    "action": "retry_payment",
                    "channel": None,
                    "fallbacks": [],
                    "template": None,
                    "variant": None,
                    "send_at": _iso(earliest),
                    "deferred_by": [],
                    "rule": step.line,
                }
            )
            continue
        channels = [c for c in step.channels if c not in opted_out]
        if not channels:
            skipped.append({"rule": step.line, "reason": "opted_out", "channels": list(step.channels)})
            continue
        send_at, reasons, note = _send_time(
            earliest, zones, channels[0], rules, country=country, region=region, sent=sent
        )
        if send_at is not None:
            sent = (*sent, SentRecord(send_at, channels[0]))
        entry: dict[str, Any] = {
            "n": len(steps) + 1,
            "channel": channels[0],
            "fallbacks": channels[1:],
            "template": step.template,
            "variant": choose_variant(policy, step, transaction_id),
            "send_at": _iso(send_at),
            "deferred_by": list(reasons),
            "rule": step.line,
        }
        if reasons:
            entry["held_by"] = [
                h.as_dict()
                for h in held_by(reasons, policy.timing, contact_windows, country=country, region=region,
                                 channel=channels[0])
            ]
        if note:
            entry["note"] = note
        steps.append(entry)

    chosen = decision.plan
    result: dict[str, Any] = {
        "transaction": txn.get("id"),
        "policy": policy.name,
        "version": version if version is not None else policy.version,
        "segment": decision.segment,
        "priority": chosen.priority if chosen else None,
        "decline_reason": decline.get("reason"),
        "timezone": zones[0] if zones else None,
        "steps": steps,
        "offers": [o.name for o in decision.offers],
        "escalation": (
            {"after": chosen.escalate_after, "to": chosen.escalate_to}
            if chosen and chosen.escalate_to
            else None
        ),
        "give_up_after": chosen.give_up_after if chosen else None,
    }
    if len(zones) > 1:
        result["timezones"] = list(zones)
    terms = {o.name: o.term for o in decision.offers if o.term}
    if terms:
        result["offer_terms"] = terms
    if holdout:
        result["holdout"] = True
    if override:
        result["override"] = override.as_dict()
    if skipped:
        result["skipped_steps"] = skipped
    if explain:
        result["explain"] = [
            {"line": c.line, "kind": c.kind, "condition": c.text, "value": c.value}
            for c in policy.explain(enriched)
        ]
        result["timezone_source"] = guess.source
    return result
