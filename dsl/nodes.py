"""The policy's syntax tree: frozen dataclasses, each with the line and column where it starts.

Positions take no part in equality, so a policy and its formatted text parse to equal trees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypeAlias

from rules.durations import UNITS
from rules.durations import Duration as Duration  # the tree keeps a duration as written

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DURATION_UNITS = UNITS  # ``15m``, ``2h``, ``3d``, ``1w``: Duration is the decision core's (rules.durations)


@dataclass(frozen=True)
class Node:
    line: int = field(default=0, compare=False, kw_only=True)
    col: int = field(default=0, compare=False, kw_only=True)


# --- values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Name(Node):
    """A bare word the user chose or picked from a list: a segment, channel, offer, priority, variant."""

    text: str


@dataclass(frozen=True)
class Text(Node):
    """A quoted string: template, team, region."""

    text: str


# --- conditions --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef(Node):
    path: str


@dataclass(frozen=True)
class MoneyLit(Node):
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class NumberLit(Node):
    value: Decimal


@dataclass(frozen=True)
class StringLit(Node):
    value: str


@dataclass(frozen=True)
class DurationLit(Node):
    value: Duration


@dataclass(frozen=True)
class PercentLit(Node):
    value: Decimal  # as written: 5% -> Decimal("5")


@dataclass(frozen=True)
class TimeLit(Node):
    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class DayLit(Node):
    day: str


@dataclass(frozen=True)
class BoolLit(Node):
    value: bool


Literal_: TypeAlias = MoneyLit | NumberLit | StringLit | DurationLit | PercentLit | TimeLit | DayLit | BoolLit
Operand: TypeAlias = FieldRef | Literal_

CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Compare(Node):
    left: Operand
    op: str
    right: Operand


@dataclass(frozen=True)
class InList(Node):
    left: Operand
    items: tuple[Operand, ...]
    negated: bool = False


@dataclass(frozen=True)
class Has(Node):
    left: Operand
    item: Operand


@dataclass(frozen=True)
class Between(Node):
    value: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True)
class Truthy(Node):
    """A yes/no fact used on its own: ``customer.vip``."""

    operand: Operand


@dataclass(frozen=True)
class Not(Node):
    expr: Expr


@dataclass(frozen=True)
class And(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Expr, ...]


Expr: TypeAlias = Compare | InList | Has | Between | Truthy | Not | And | Or


# --- top-level statements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment(Node):
    name: Name
    condition: Expr | None  # None: `otherwise`, the catch-all


@dataclass(frozen=True)
class HoursEntry(Node):
    first_day: DayLit
    last_day: DayLit | None
    start: TimeLit
    end: TimeLit

    def days(self) -> tuple[int, ...]:
        a = WEEKDAYS.index(self.first_day.day)
        b = a if self.last_day is None else WEEKDAYS.index(self.last_day.day)
        if b >= a:
            return tuple(range(a, b + 1))
        return tuple(range(a, 7)) + tuple(range(0, b + 1))  # sat-mon wraps the week


@dataclass(frozen=True)
class BusinessHours(Node):
    regions: tuple[Text, ...]
    entries: tuple[HoursEntry, ...]


@dataclass(frozen=True)
class QuietHours(Node):
    regions: tuple[Text, ...]
    start: TimeLit
    end: TimeLit


@dataclass(frozen=True)
class Skip(Node):
    items: tuple[Name, ...]  # holidays, weekends


@dataclass(frozen=True)
class CadenceMax(Node):
    count: Decimal
    period: str  # hour, day, week


@dataclass(frozen=True)
class CadenceGap(Node):
    gap: Duration


CadenceItem: TypeAlias = CadenceMax | CadenceGap


@dataclass(frozen=True)
class Cadence(Node):
    items: tuple[CadenceItem, ...]
    across_all_channels: bool


@dataclass(frozen=True)
class Override(Node):
    condition: Expr
    ignores: tuple[Name, ...]  # business_hours, weekends, holidays, cadence, quiet_hours (refused)


@dataclass(frozen=True)
class Holdout(Node):
    """``holdout 5%`` (held-out cases get nothing) or ``holdout 5% with retries`` (they keep the plan's card
    retries, and still get no messages and no escalation)."""

    percent: PercentLit
    with_retries: bool = False


@dataclass(frozen=True)
class Offer(Node):
    name: str
    term: Duration | None = None


@dataclass(frozen=True)
class OfferRule(Node):
    condition: Expr | None  # None: otherwise
    offers: tuple[Offer, ...]


@dataclass(frozen=True)
class Offers(Node):
    rules: tuple[OfferRule, ...]
    end_line: int = field(default=0, compare=False, kw_only=True)


@dataclass(frozen=True)
class Priority(Node):
    level: Name


@dataclass(frozen=True)
class Variant(Node):
    name: str
    weight: Decimal  # percent as written


@dataclass(frozen=True)
class MessageStep(Node):
    after: Duration
    channels: tuple[Name, ...]
    template: Text
    variants: tuple[Variant, ...]
    condition: Expr | None


@dataclass(frozen=True)
class RetryStep(Node):
    after: Duration
    condition: Expr | None


Step: TypeAlias = MessageStep | RetryStep


@dataclass(frozen=True)
class Escalate(Node):
    after: Duration
    team: Text


@dataclass(frozen=True)
class GiveUp(Node):
    after: Duration


PlanItem: TypeAlias = Priority | MessageStep | RetryStep | Escalate | GiveUp


@dataclass(frozen=True)
class Plan(Node):
    segments: tuple[Name, ...]  # empty: `plan otherwise`, the fallback plan
    items: tuple[PlanItem, ...]
    end_line: int = field(default=0, compare=False, kw_only=True)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(i for i in self.items if isinstance(i, MessageStep | RetryStep))


@dataclass(frozen=True)
class Arm(Node):
    """One arm of an experiment: its name, its share of the cases (percent as written) and the statements it
    writes in place of the base policy's (none: the base policy as written)."""

    name: Name
    weight: PercentLit
    statements: tuple[Statement, ...] = ()
    end_line: int = field(default=0, compare=False, kw_only=True)  # 0: an arm without statements has no end


@dataclass(frozen=True)
class Guardrail(Node):
    """``guardrail opt_out 1%``: the rise of the event's rate per case over control that is accepted."""

    metric: Name
    percent: PercentLit


@dataclass(frozen=True)
class Experiment(Node):
    name: str
    arms: tuple[Arm, ...]  # the first is the control
    guardrails: tuple[Guardrail, ...]
    end_line: int = field(default=0, compare=False, kw_only=True)


Statement: TypeAlias = (
    Segment | BusinessHours | QuietHours | Skip | Cadence | Override | Holdout | Offers | Plan | Experiment
)


@dataclass(frozen=True)
class Comment:
    line: int
    text: str  # with its leading '#'
    trailing: bool  # after code on the same line


@dataclass(frozen=True)
class Policy(Node):
    name: str
    statements: tuple[Statement, ...]
    end_line: int = field(default=0, compare=False, kw_only=True)
    comments: tuple[Comment, ...] = field(default=(), compare=False, kw_only=True)
