"""A plan: what the planner decided for one case, as frozen values.

The planner (``rules.planner.plan``) returns a :class:`Plan`; it becomes JSON only at the edges: the case's
``plan`` column (``app.recovery.planning``), ``flask policy simulate`` and the admin. :meth:`Plan.to_json` writes the
shape docs/architecture.md documents (and that rows already stored have), :meth:`Plan.from_json` reads it back::

    {"transaction": "t-9", "policy": "standard", "version": 3, "segment": "vip", "priority": "urgent",
     "decline_reason": "insufficient_funds", "timezone": "America/New_York",
     "steps": [{"n": 1, "channel": "whatsapp", "fallbacks": ["email"], "template": "vip_personal",
                "variant": "A", "send_at": "2026-11-27T14:00:00Z", "deferred_by": ["quiet_hours"], "rule": 14}],
     "offers": ["retry_later"], "escalation": {"after": "P2D", "to": "account-managers"},
     "give_up_after": "P14D"}

Durations stay in the ISO 8601 text the policy's compiler wrote (``P2D``); ``rules.durations`` reads them. A plan
made by a policy that runs an experiment also says the case's arm, under ``"experiment"`` (absent otherwise, and
from plans stored before experiments: they still load).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rules.contact_rules import HeldBy, Override
from rules.durations import parse_iso
from rules.facts import instant, iso_instant
from rules.policy import ConditionResult
from rules.vocabulary import Channel, Priority, StepAction

__all__ = ["Escalation", "ExperimentAssignment", "Plan", "PlanError", "PlannedStep", "SkippedStep"]


class PlanError(ValueError):
    """A stored plan that cannot be read back."""


@dataclass(frozen=True)
class PlannedStep:
    """One step of a plan: a message (its channel, then fallbacks) or a payment retry, and when it goes.

    ``send_at`` None: the timing core found no allowed time (``note`` says why). ``rule``: the policy line."""

    n: int
    action: StepAction
    channel: Channel | None
    fallbacks: tuple[Channel, ...]
    template: str | None
    variant: str | None
    send_at: datetime | None
    deferred_by: tuple[str, ...]
    rule: int
    held_by: tuple[HeldBy, ...] = ()
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        if self.action is not StepAction.MESSAGE:
            out["action"] = self.action.value
        out.update(
            channel=self.channel.value if self.channel is not None else None,
            fallbacks=[c.value for c in self.fallbacks],
            template=self.template,
            variant=self.variant,
            send_at=iso_instant(self.send_at) if self.send_at is not None else None,
            deferred_by=list(self.deferred_by),
            rule=self.rule,
        )
        if self.held_by:
            out["held_by"] = [h.as_dict() for h in self.held_by]
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> PlannedStep:
        channel = stored.get("channel")
        return cls(
            n=int(stored["n"]),
            action=StepAction(stored.get("action") or StepAction.MESSAGE),
            channel=Channel(channel) if channel else None,
            fallbacks=tuple(Channel(c) for c in stored.get("fallbacks") or ()),
            template=stored.get("template"),
            variant=stored.get("variant"),
            send_at=instant(stored.get("send_at")),
            deferred_by=tuple(stored.get("deferred_by") or ()),
            rule=int(stored["rule"]),
            held_by=tuple(
                HeldBy(h["reason"], h["source"], h.get("line"), h.get("detail")) for h in stored.get("held_by") or ()
            ),
            note=stored.get("note"),
        )


@dataclass(frozen=True)
class SkippedStep:
    """A step the plan left out, and why (``opted_out``: the customer opted out of every channel it names)."""

    rule: int
    reason: str
    channels: tuple[Channel, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "reason": self.reason, "channels": [c.value for c in self.channels]}

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> SkippedStep:
        return cls(int(stored["rule"]), str(stored["reason"]), tuple(Channel(c) for c in stored.get("channels") or ()))


@dataclass(frozen=True)
class Escalation:
    """Hand the case to a team (``to``) this long (ISO 8601, as the policy wrote it) after the payment failed."""

    after: str | None
    to: str

    @property
    def delay(self) -> timedelta:
        return parse_iso(self.after) if self.after else timedelta(0)


@dataclass(frozen=True)
class ExperimentAssignment:
    """The arm of the policy's experiment a case was planned with. ``unit``: what the arm was drawn from
    (``customer:<id>``, else ``transaction:<id>``); ``salt``: the experiment's definition it was drawn under
    (``rules.policy.CompiledExperiment.salt``). ``reassigned_from``: the arm the unit was drawn to when that arm
    was stopped, and the case got the control instead (such a case is left out of the experiment's analysis)."""

    experiment: str  # the experiment's name
    arm: str
    unit: str
    salt: str
    reassigned_from: str | None = None

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.experiment

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"experiment": self.experiment, "arm": self.arm, "unit": self.unit, "salt": self.salt}
        if self.reassigned_from is not None:
            out["reassigned_from"] = self.reassigned_from
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> ExperimentAssignment:
        reassigned = stored.get("reassigned_from")
        return cls(
            str(stored["experiment"]),
            str(stored["arm"]),
            str(stored["unit"]),
            str(stored["salt"]),
            str(reassigned) if reassigned is not None else None,
        )


@dataclass(frozen=True)
class Plan:
    """What a policy decided for one case, with each step's send time. ``zones``: the customer's candidate zones,
    the first one shown as their zone. ``explain`` and ``timezone_source`` only when explaining was asked."""

    transaction: str | int | None
    policy: str
    version: int | None
    segment: str | None
    priority: Priority | None
    decline_reason: str | None
    zones: tuple[str, ...]
    steps: tuple[PlannedStep, ...]
    offers: tuple[str, ...]
    escalation: Escalation | None
    give_up_after: str | None  # ISO 8601, as the policy wrote it
    offer_terms: Mapping[str, str] = field(default_factory=dict)  # offer -> ISO 8601 term
    holdout: bool = False
    override: Override | None = None
    skipped_steps: tuple[SkippedStep, ...] = ()
    explain: tuple[ConditionResult, ...] | None = None
    timezone_source: str | None = None
    experiment: ExperimentAssignment | None = None  # None: the policy runs no experiment, or the case is held out

    @property
    def timezone(self) -> str | None:
        return self.zones[0] if self.zones else None

    @property
    def give_up_delay(self) -> timedelta | None:
        return parse_iso(self.give_up_after) if self.give_up_after else None

    def to_json(self) -> dict[str, Any]:
        """The stored shape (the case's ``plan`` column, the simulator's output)."""
        out: dict[str, Any] = {
            "transaction": self.transaction,
            "policy": self.policy,
            "version": self.version,
            "segment": self.segment,
            "priority": self.priority.value if self.priority is not None else None,
            "decline_reason": self.decline_reason,
            "timezone": self.timezone,
            "steps": [s.to_json() for s in self.steps],
            "offers": list(self.offers),
            "escalation": {"after": self.escalation.after, "to": self.escalation.to} if self.escalation else None,
            "give_up_after": self.give_up_after,
        }
        if len(self.zones) > 1:
            out["timezones"] = list(self.zones)
        if self.offer_terms:
            out["offer_terms"] = dict(self.offer_terms)
        if self.holdout:
            out["holdout"] = True
        if self.override:
            out["override"] = self.override.as_dict()
        if self.skipped_steps:
            out["skipped_steps"] = [s.to_json() for s in self.skipped_steps]
        if self.experiment is not None:
            out["experiment"] = self.experiment.to_json()
        if self.explain is not None:
            out["explain"] = [
                {"line": c.line, "kind": c.kind, "condition": c.text, "value": c.value} for c in self.explain
            ]
            out["timezone_source"] = self.timezone_source
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Plan:
        """A stored plan (any row written since plans were stored) -> Plan. PlanError when it cannot be read."""
        try:
            escalation = stored.get("escalation")
            priority = stored.get("priority")
            zones = stored.get("timezones") or ([stored["timezone"]] if stored.get("timezone") else [])
            explain = stored.get("explain")
            return cls(
                transaction=stored.get("transaction"),
                policy=str(stored["policy"]),
                version=stored.get("version"),
                segment=stored.get("segment"),
                priority=Priority(priority) if priority else None,
                decline_reason=stored.get("decline_reason"),
                zones=tuple(zones),
                steps=tuple(PlannedStep.from_json(s) for s in stored.get("steps") or ()),
                offers=tuple(stored.get("offers") or ()),
                escalation=Escalation(escalation.get("after"), escalation["to"]) if escalation else None,
                give_up_after=stored.get("give_up_after"),
                offer_terms=dict(stored.get("offer_terms") or {}),
                holdout=bool(stored.get("holdout")),
                override=Override.from_dict(stored.get("override")) if stored.get("override") else None,
                skipped_steps=tuple(SkippedStep.from_json(s) for s in stored.get("skipped_steps") or ()),
                explain=(
                    tuple(ConditionResult(e["kind"], e["line"], e["condition"], e["value"]) for e in explain)
                    if explain is not None
                    else None
                ),
                timezone_source=stored.get("timezone_source"),
                experiment=ExperimentAssignment.from_json(stored["experiment"]) if stored.get("experiment") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"not a stored plan: {exc}") from exc
