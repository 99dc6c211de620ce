"""Policy + facts -> plan (``rules.plan.Plan``). Pure: the same facts always give the same plan.

The compiled policy decides segment, offers and steps; this module adds what depends on the case: the decline
reason (rules.declines), the draws (the holdout, the experiment's arm, each step's template variant), the customer's
timezone and each step's send time (rules.timing).

Every draw is a hash of the policy's name, what is drawn and the *unit* (``assignment_unit``: the customer when
the facts name one, else the transaction), so it never changes between runs and a customer's cases all fall the
same way: in or out of the holdout, in one arm, with one variant of each template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from rules.contact_rules import contact_rules_for, held_by, policy_override
from rules.facts import Facts, FactsError
from rules.plan import Escalation, ExperimentAssignment, Plan, PlannedStep, SkippedStep
from rules.policy import CompiledPolicy, CompiledStep
from rules.timing import (
    ContactHistory,
    ContactRules,
    SentRecord,
    detect_timezone,
    next_send_time,
)
from rules.vocabulary import StepAction

__all__ = [
    "FactsError",
    "assignment_unit",
    "choose_arm",
    "choose_variant",
    "decline_facts",
    "in_holdout",
    "plan",
]


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


def assignment_unit(facts: Facts | Mapping[str, Any]) -> str:
    """What the draws are made for: ``customer:<id>`` when the facts carry ``customer.id``, else
    ``transaction:<id>``. By the customer, so that all their cases fall the same way."""
    facts = Facts.from_json(facts)
    customer = facts.customer.get("id")
    if isinstance(customer, str | int) and not isinstance(customer, bool) and str(customer):
        return f"customer:{customer}"
    return f"transaction:{facts.transaction_id}"


def in_holdout(policy: CompiledPolicy, unit: str) -> bool:
    """Whether ``unit`` (``assignment_unit``) is in the policy's holdout. The draw ignores the share, so a larger
    holdout keeps everyone a smaller one held out."""
    share = policy.holdout_percent
    return share > 0 and _draw("holdout", policy.name, unit) < share * 100


def _pick(point: Decimal, weighted: tuple[tuple[str, Decimal], ...]) -> str:
    """The name whose slice of 100 (the weights, in percent, in order) holds ``point``."""
    total = Decimal(0)
    for name, weight in weighted:
        total += weight
        if point < total:
            return name
    return weighted[-1][0]


def choose_variant(policy: CompiledPolicy, step: CompiledStep, unit: str) -> str | None:
    """The template variant of ``step`` for ``unit``. Drawn by the step's template and split (not its line), so
    a unit keeps its variant when lines move, and gets the same one from every step with that template and split."""
    if not step.variants:
        return None
    split = ",".join(f"{name}={format(weight.normalize(), 'f')}" for name, weight in step.variants)
    identity = f"{step.template or ''}\x1e{split}"
    return _pick(Decimal(_draw("variant", policy.name, identity, unit)) / 100, step.variants)


def choose_arm(
    policy: CompiledPolicy, unit: str, stopped_arms: Collection[str] = ()
) -> ExperimentAssignment | None:
    """The arm of the policy's experiment for ``unit`` (None when the policy has no experiment). A unit drawn to a
    stopped arm gets the control instead, and the assignment names the arm it was drawn to."""
    experiment = policy.experiment
    if experiment is None:
        return None
    weights = tuple((a.name, a.weight) for a in experiment.arms)
    drawn = _pick(Decimal(_draw("experiment", policy.name, experiment.salt, unit)) / 100, weights)
    if drawn in stopped_arms and drawn != experiment.control:
        return ExperimentAssignment(experiment.name, experiment.control, unit, experiment.salt, reassigned_from=drawn)
    return ExperimentAssignment(experiment.name, drawn, unit, experiment.salt)


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
    stopped_arms: Collection[str] = (),
) -> Plan:
    """The plan for one case. ``facts`` as :class:`Facts`, or as the Facts JSON (read by ``Facts.from_json``).
    Raises FactsError only when the facts are not an object or carry no time.

    ``contact_windows`` is the merchant's setting of that name (business hours, quiet hours and blackout dates by
    region): the default that the policy's own timing statements override (``rules.contact_settings``). Without
    it, the policy's statements and the shipped defaults alone decide.

    The holdout is drawn first: a held-out case gets no messages, no escalation and no arm (and no card retries
    either, unless the policy says ``holdout ... with retries``). Otherwise, when the policy runs an
    experiment, the case gets its unit's arm (``choose_arm``; ``stopped_arms`` send theirs to the control) and is
    planned with that arm's policy: segment, plans, offers, cadence and timing all from it.
    """
    facts = Facts.from_json(facts)
    unit = assignment_unit(facts)
    holdout = in_holdout(policy, unit)
    assignment = None if holdout else choose_arm(policy, unit, stopped_arms)
    arm_policy = policy.experiment.arm(assignment.arm).policy if policy.experiment and assignment else None
    made = _plan(
        arm_policy or policy,
        facts,
        unit=unit,
        holdout=holdout,
        version=version if version is not None else policy.version,
        explain=explain,
        contact_windows=contact_windows,
    )
    return replace(made, experiment=assignment) if assignment is not None else made


def _kept_steps(policy: CompiledPolicy, steps: tuple[CompiledStep, ...], holdout: bool) -> tuple[CompiledStep, ...]:
    """The steps a case gets: all of them, or for a held-out case none (``holdout 5%``) or only the card retries
    (``holdout 5% with retries``: a charge attempt is not a contact)."""
    if not holdout:
        return steps
    if policy.holdout_keeps_retries:
        return tuple(s for s in steps if s.action is StepAction.RETRY_PAYMENT)
    return ()


def _plan(
    policy: CompiledPolicy,
    facts: Facts,
    *,
    unit: str,
    holdout: bool,
    version: int | None,
    explain: bool,
    contact_windows: Mapping[str, Any] | None,
) -> Plan:
    """The plan by ``policy`` (the policy, or the arm's) for the unit, held out or not."""
    start = facts.failed_at or facts.now
    if start is None:
        raise FactsError('facts need "now" or "transaction.failed_at" as an ISO 8601 time with a zone')
    now = facts.now or start

    decline = decline_facts(facts)
    enriched = facts.for_policy(decline)
    decision = policy.decide(enriched)

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

    steps: list[PlannedStep] = []
    skipped: list[SkippedStep] = []
    sent = facts.sent
    for step in _kept_steps(policy, decision.steps, holdout):
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
                variant=choose_variant(policy, step, unit),
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
        version=version,
        segment=decision.segment,
        priority=chosen.priority if chosen else None,
        decline_reason=decline.get("reason"),
        zones=zones,
        steps=tuple(steps),
        offers=tuple(o.name for o in decision.offers),
        escalation=(
            Escalation(chosen.escalate_after, chosen.escalate_to)
            if chosen and chosen.escalate_to and not holdout
            else None
        ),
        give_up_after=chosen.give_up_after if chosen else None,
        offer_terms={o.name: o.term for o in decision.offers if o.term},
        holdout=holdout,
        override=override or None,
        skipped_steps=tuple(skipped),
        explain=tuple(policy.explain(enriched)) if explain else None,
        timezone_source=guess.source if explain else None,
    )
