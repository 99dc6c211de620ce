"""The words the policy, the planner, the outbox and the admin share, each spelled once.

A plan, an outbox row and a queue name carry these as plain strings (JSON, database columns, RQ); the code reads
and compares them through these enums (a ``StrEnum`` member equals its text, so ``"sms" == Channel.SMS``).
Case states and their groups live with their state machine (``rules.case_states``).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CHANNELS",
    "GUARDRAIL_METRICS",
    "PHONE_CHANNELS",
    "POLICY_LIFTS",
    "PRIORITIES",
    "Channel",
    "OutboxTask",
    "PolicyStatus",
    "Priority",
    "StepAction",
]


class Channel(StrEnum):
    """A channel that reaches a person."""

    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class OutboxTask(StrEnum):
    """An outbox row that writes to nobody: its ``channel`` column names the work instead of a :class:`Channel`."""

    PAYMENT_RETRY = "payment_retry"  # the plan's retry step: charge the card on file again
    PAYMENT_DUE = "payment_due"  # a payment the customer scheduled (a partial payment's rest): charge it when due
    ESCALATION = "escalation"  # hand the case to a team (``address`` names the team)


class Priority(StrEnum):
    """How soon a case's messages go when many are due: urgent first (dispatch claims, RQ queues)."""

    URGENT = "urgent"
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for urgent, 3 for low: sort by it for the most urgent first."""
        return _RANK[self]

    @classmethod
    def of(cls, value: object) -> Priority:
        """The priority named by ``value``; anything else (None, an unknown word) is DEFAULT."""
        return cls(value) if isinstance(value, str) and value in _VALUES else cls.DEFAULT


_RANK = {p: i for i, p in enumerate(Priority)}
_VALUES = frozenset(p.value for p in Priority)


class StepAction(StrEnum):
    """What a planned step does: send a message, or charge the card again."""

    MESSAGE = "message"
    RETRY_PAYMENT = "retry_payment"


class PolicyStatus(StrEnum):
    """Where a policy version is in its review: written, then approved (or rejected), then active, then replaced."""

    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    SUPERSEDED = "superseded"


class TemplateStatus(StrEnum):
    """Where a message template version is in its review: a draft, submitted, then approved (customers may receive
    it: the newest approved version is the template's live one) or rejected (never sent)."""

    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"


#: what a policy's ``override ... : ignore ...`` may lift (the DSL's validator allows no more; rules.contact_rules
#: lifts no more): never quiet hours, legal windows, holidays or cadence caps
POLICY_LIFTS = frozenset({"business_hours", "weekends"})

#: what an experiment's ``guardrail`` may watch: an event counted per case (experiments.guardrails.GuardrailMetric
#: spells the same words; tests/rules/test_experiment_assignment.py keeps the two equal)
GUARDRAIL_METRICS: tuple[str, ...] = ("opt_out", "stop", "complaint", "retry_fee")

#: every channel, in the order the admin lists them: the channels that reach a person
CHANNELS: tuple[Channel, ...] = tuple(Channel)
#: the channels that write to a phone number (a STOP on one of them opts the customer out of both)
PHONE_CHANNELS: tuple[Channel, ...] = (Channel.SMS, Channel.WHATSAPP)
#: every priority, most urgent first
PRIORITIES: tuple[Priority, ...] = tuple(Priority)
