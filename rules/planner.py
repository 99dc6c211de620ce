"""Policy + facts -> plan (``rules.plan.Plan``). Pure: the same facts always give the same plan.

The compiled policy decides segment, offers and steps; this module adds what depends on the case: the decline
reason (rules.declines), the holdout and A/B draws (a hash of the transaction id, so they never change between
runs), the customer's timezone and each step's send time (rules.timing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from rules.contact_rules import contact_rules_for, held_by, policy_override
from rules.facts import Facts, FactsError
from rules.plan import Escalation, Plan, PlannedStep, SkippedStep
from rules.policy import CompiledPolicy, CompiledStep
from rules.timing import (
    ContactHistory,
    ContactRules,
    SentRecord,
    detect_timezone,
    next_send_time,
)
from rules.vocabulary import StepAction

__all__ = ["FactsError", "choose_variant", "decline_facts", "in_holdout", "plan"]


# --- decline ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _classify(code: str | None, advice: str | None, gateway: str) -> dict[str, str | None]:
    from rules.declines import classify_decline  # the decline taxonomy is optional for pure DSL use

    info = classify_decline(code, advice, gateway=gateway)
    return {"reason": str(info.reason.value), "kind": str(info.kind.value), "code": code}


def decline_facts(facts: Facts | Mapping[str, Any]) -> dict[str, Any]:
    """``decline.reason`` / ``.kind`` / ``.code``: given in the facts, or derived from the decline code."""
    facts = Facts.from_json(facts)
    given = facts.decline
    if given is not None and given.get("reason"):
        return dict(given)
    txn = facts.transaction
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


def plan(
    policy: CompiledPolicy,
    facts: Facts | Mapping[str, Any],
    *,
    version: int | None = None,
    explain: bool = False,
    contact_windows: Mapping[str, Any] | None = None,
) -> Plan:
    """The plan for one case. ``facts`` as :class:`Facts`, or as the Facts JSON (read by ``Facts.from_json``).
    Raises FactsError only when the facts are not an object or carry no time.

    ``contact_windows`` is the merchant's setting of that name (business hours, quiet hours and blackout dates by
    region): the default that the policy's own timing statements override (``rules.contact_settings``). Without
    it, the policy's statements and the shipped defaults alone decide.
    """
    facts = Facts.from_json(facts)
    start = facts.failed_at or facts.now
    if start is None:
        raise FactsError('facts need "now" or "transaction.failed_at" as an ISO 8601 time with a zone')
    now = facts.now or start

    decline = decline_facts(facts)
    enriched = facts.for_policy(decline)
    decision = policy.decide(enriched)
    transaction_id = facts.transaction_id

    guess = detect_timezone(
        explicit=facts.text("customer", "timezone"),
        country=facts.text("customer", "country"),
        region=facts.text("customer", "region"),
        postal_code=facts.text("customer", "postal_code"),
        phone=facts.text("customer", "phone"),
    )
    zones = tuple(guess.zones) if guess.usable else ()
    country, region = facts.text("customer", "country"), facts.text("customer", "region")
    opted_out = facts.opted_out
    override = policy_override(policy, enriched, decision.ignores)
    # the same function the dispatcher checks with at send time (the override travels with each message)
    rules = contact_rules_for(policy.timing, contact_windows, override, country=country, region=region)

    holdout = in_holdout(policy, transaction_id)
    steps: list[PlannedStep] = []
    skipped: list[SkippedStep] = []
    sent = facts.sent
    for step in () if holdout else decision.steps:
        earliest = max(start + timedelta(seconds=step.after_seconds), now)
        if step.action is StepAction.RETRY_PAYMENT:
            # a charge attempt is not a contact: no contact windows, but it goes through the retry budget
            steps.append(
                PlannedStep(len(steps) + 1, StepAction.RETRY_PAYMENT, None, (), None, None, earliest, (), step.line)
            )
            continue
        channels = tuple(c for c in step.channels if c not in opted_out)
        if not channels:
            skipped.append(SkippedStep(step.line, "opted_out", step.channels))
            continue
        send_at, reasons, note = _send_time(
            earliest, zones, channels[0], rules, country=country, region=region, sent=sent
        )
        if send_at is not None:
            sent = (*sent, SentRecord(send_at, channels[0]))
        held = (
            held_by(reasons, policy.timing, contact_windows, country=country, region=region, channel=channels[0])
            if reasons
            else ()
        )
        steps.append(
            PlannedStep(
                n=len(steps) + 1,
                action=StepAction.MESSAGE,
                channel=channels[0],
                fallbacks=channels[1:],
                template=step.template,
                variant=choose_variant(policy, step, transaction_id),
                send_at=send_at,
                deferred_by=reasons,
                rule=step.line,
                held_by=held,
                note=note or None,
            )
        )

    chosen = decision.plan
    return Plan(
        transaction=facts.transaction.get("id"),
        policy=policy.name,
        version=version if version is not None else policy.version,
        segment=decision.segment,
        priority=chosen.priority if chosen else None,
        decline_reason=decline.get("reason"),
        zones=zones,
        steps=tuple(steps),
        offers=tuple(o.name for o in decision.offers),
        escalation=Escalation(chosen.escalate_after, chosen.escalate_to) if chosen and chosen.escalate_to else None,
        give_up_after=chosen.give_up_after if chosen else None,
        offer_terms={o.name: o.term for o in decision.offers if o.term},
        holdout=holdout,
        override=override or None,
        skipped_steps=tuple(skipped),
        explain=tuple(policy.explain(enriched)) if explain else None,
        timezone_source=guess.source if explain else None,
    )
