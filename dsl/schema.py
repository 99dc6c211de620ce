"""What a policy may talk about: the facts, their types, and the fixed vocabularies (channels, offers, ...).

Facts come from the Facts JSON of docs/architecture.md (``rules.facts.Facts``); a few are derived (``customer.vip``
from the tags, ``decline.reason`` / ``decline.kind`` from the decline code, ``transaction.age`` from now and
failed_at).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rules.declines import DeclineKind, DeclineReason
from rules.vocabulary import POLICY_LIFTS, Channel, Priority


class Type(StrEnum):
    money = "money"
    number = "number"
    text = "text"
    duration = "duration"
    percent = "percent"
    time = "time"
    weekday = "weekday"
    yes_no = "yes/no"
    list = "list"

    @property
    def described(self) -> str:
        return TYPE_WORDS[self]


TYPE_WORDS = {
    Type.money: "an amount of money (like 500 USD)",
    Type.number: "a number (like 3)",
    Type.text: 'a text (like "US")',
    Type.duration: "a duration (like 2d)",
    Type.percent: "a percentage (like 40%)",
    Type.time: "a time of day (like 09:00)",
    Type.weekday: "a weekday (like mon)",
    Type.yes_no: "a yes/no fact (true or false)",
    Type.list: 'a list (use has, like customer.tags has "vip")',
}

# the decision core's vocabularies, as the words a policy writes
DECLINE_REASONS = tuple(r.value for r in DeclineReason)
DECLINE_KINDS = tuple(k.value for k in DeclineKind)
CHANNELS = tuple(c.value for c in Channel)
OFFERS = (
    "update_card",
    "partial_payment",
    "pay_later",
    "payment_plan",
    "bank_transfer",
    "retry_later",
    "alternative_payment",
    "discount",
)
OFFERS_WITH_TERM = ("pay_later", "payment_plan")
PRIORITIES = tuple(p.value for p in Priority)  # most urgent first
OVERRIDABLE = tuple(sorted(POLICY_LIFTS))  # never legal windows, quiet hours, holidays or cadence caps


@dataclass(frozen=True)
class FieldSpec:
    type: Type
    values: tuple[str, ...] = ()  # the only values a text (or list) fact can take, when known
    meaning: str = ""


FIELDS: dict[str, FieldSpec] = {
    "customer.id": FieldSpec(Type.text),
    "customer.email": FieldSpec(Type.text),
    "customer.phone": FieldSpec(Type.text),
    "customer.country": FieldSpec(Type.text, meaning="ISO country code, like US"),
    "customer.region": FieldSpec(Type.text, meaning="state or region code, like FL"),
    "customer.postal_code": FieldSpec(Type.text),
    "customer.timezone": FieldSpec(Type.text),
    "customer.locale": FieldSpec(Type.text),
    "customer.successful_payments": FieldSpec(Type.number),
    "customer.failed_payments": FieldSpec(Type.number),
    "customer.lifetime_value": FieldSpec(Type.money, meaning="in the transaction's currency"),
    "customer.tags": FieldSpec(Type.list),
    "customer.opted_out": FieldSpec(Type.list, CHANNELS),
    "customer.vip": FieldSpec(Type.yes_no, meaning='tagged "vip"'),
    "transaction.id": FieldSpec(Type.text),
    "transaction.gateway": FieldSpec(Type.text),
    "transaction.amount": FieldSpec(Type.money),
    "transaction.currency": FieldSpec(Type.text),
    "transaction.decline_code": FieldSpec(Type.text),
    "transaction.product_type": FieldSpec(Type.text),
    "transaction.age": FieldSpec(Type.duration, meaning="time since the payment failed"),
    "transaction.failed_time": FieldSpec(
        Type.time, meaning="time of day of the failure, customer's zone if known"
    ),
    "transaction.failed_weekday": FieldSpec(Type.weekday),
    "decline.reason": FieldSpec(Type.text, DECLINE_REASONS),
    "decline.kind": FieldSpec(Type.text, DECLINE_KINDS),
    "decline.code": FieldSpec(Type.text),
    "history.previous_cases": FieldSpec(Type.number),
    "history.recovered_cases": FieldSpec(Type.number),
    "history.messages_sent": FieldSpec(Type.number),
    "history.retries_last_30_days": FieldSpec(Type.number),
    "history.since_last_payment": FieldSpec(Type.duration),
    "predicted.recovery_likelihood": FieldSpec(Type.percent),
    "predicted.best_hour": FieldSpec(Type.time),
}

GROUPS = tuple(sorted({path.split(".")[0] for path in FIELDS}))
