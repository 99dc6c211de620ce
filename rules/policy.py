"""A compiled policy: what the planner and the dispatcher read, and what ``dsl`` compiles a policy's text into.

These are the decision core's own types. ``dsl.compiler`` builds them from a validated syntax tree; nothing here
knows the language (no ``dsl``, no Lark), so ``import rules.planner`` stays light and the arrows point one way:
``dsl`` -> ``rules``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from typing import Any, NamedTuple, Protocol, TypeVar

from rules.vocabulary import Channel, Priority, StepAction

__all__ = [
    "BusinessHoursRule",
    "CadenceRule",
    "CompiledArm",
    "CompiledExperiment",
    "CompiledOffer",
    "CompiledPlan",
    "CompiledPolicy",
    "CompiledStep",
    "ConditionResult",
    "DecideFn",
    "Decision",
    "ExplainFn",
    "HoursWindow",
    "OverrideRule",
    "PolicyTiming",
    "PolicyWarning",
    "QuietHoursRule",
]


class PolicyWarning(Protocol):
    """A warning the compiler found (``dsl.errors.Diagnostic``): where, and what to do about it."""

    @property
    def line(self) -> int: ...

    @property
    def col(self) -> int: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class HoursWindow:
    days: tuple[int, ...]  # 0 = Monday
    start: time
    end: time


@dataclass(frozen=True)
class BusinessHoursRule:
    regions: tuple[str, ...]  # empty: everywhere without a more specific rule
    windows: tuple[HoursWindow, ...]
    line: int


@dataclass(frozen=True)
class QuietHoursRule:
    regions: tuple[str, ...]
    start: time
    end: time  # may be earlier than start: the window wraps past midnight
    line: int


@dataclass(frozen=True)
class CadenceRule:
    per_hour: int | None = None
    per_day: int | None = None
    per_week: int | None = None
    min_gap_seconds: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class OverrideRule:
    ignores: frozenset[str]  # business_hours, weekends
    line: int


@dataclass(frozen=True)
class PolicyTiming:
    """The policy's own contact windows; the timing core applies the legal windows on top of these."""

    business_hours: tuple[BusinessHoursRule, ...]
    quiet_hours: tuple[QuietHoursRule, ...]
    skip_holidays: bool
    skip_weekends: bool
    cadence: CadenceRule | None
    overrides: tuple[OverrideRule, ...]
    #: where ``skip holidays`` / ``skip weekends`` were written: (("holidays", line), ...), to name them
    skip_lines: tuple[tuple[str, int], ...] = ()

    def business_hours_for(self, country: str | None, region: str | None) -> BusinessHoursRule | None:
        return _most_specific(self.business_hours, country, region)

    def quiet_hours_for(self, country: str | None, region: str | None) -> QuietHoursRule | None:
        return _most_specific(self.quiet_hours, country, region)


_Rule = TypeVar("_Rule", BusinessHoursRule, QuietHoursRule)


def _most_specific(rules: tuple[_Rule, ...], country: str | None, region: str | None) -> _Rule | None:
    full = f"{country}-{region}" if country and region else None
    for wanted in (full, country):
        if wanted:
            for rule in rules:
                if wanted in rule.regions:
                    return rule
    return next((r for r in rules if not r.regions), None)


@dataclass(frozen=True)
class CompiledOffer:
    name: str
    term: str | None  # ISO 8601 duration, e.g. pay_later 7d -> P7D


@dataclass(frozen=True)
class CompiledStep:
    index: int  # position in the plan as written
    line: int
    action: StepAction
    after_seconds: int
    after: str  # as written: 15m
    channels: tuple[Channel, ...]  # the first, then its fallbacks
    template: str | None
    variants: tuple[tuple[str, Decimal], ...]
    condition: str | None  # the condition as text, for explanations


@dataclass(frozen=True)
class CompiledPlan:
    line: int
    segments: tuple[str, ...]
    priority: Priority
    steps: tuple[CompiledStep, ...]
    escalate_after: str | None  # ISO 8601
    escalate_to: str | None
    give_up_after: str | None  # ISO 8601


class Decision(NamedTuple):
    """What the policy decides for one case, before timing.

    Immutable like the other domain values (a NamedTuple: cheap to make and to compare). ``decide`` returns
    Decisions built once per compiled policy, so equal decisions are usually the same object.
    """

    segment: str | None
    plan: CompiledPlan | None
    offers: tuple[CompiledOffer, ...]
    steps: tuple[CompiledStep, ...]
    ignores: frozenset[str]  # what the matching overrides allow to ignore


@dataclass(frozen=True)
class ConditionResult:
    kind: str  # segment, offer, override, step, part
    line: int
    text: str
    value: bool


DecideFn = Callable[[Mapping[str, Any]], Decision]
ExplainFn = Callable[[Mapping[str, Any]], list[bool]]


@dataclass(frozen=True, eq=False)
class CompiledArm:
    """One arm of an experiment. ``weight``: its share of the cases, in percent as written (50 for 50%).
    ``policy``: what the arm plans with, the base policy with the arm's statements in place of those they replace
    (its own ``experiment`` None); None for an arm that writes no statements: the base policy as written."""

    name: str
    weight: Decimal
    policy: CompiledPolicy | None
    line: int


@dataclass(frozen=True, eq=False)
class CompiledExperiment:
    """A policy's experiment. The first arm is the control. ``guardrails``: (metric, the rise of its rate per case
    over control accepted, as a fraction: ``guardrail opt_out 1%`` -> ("opt_out", Decimal("0.01")); what
    ``experiments.guardrails.Guardrail(metric, max_harm=float(fraction))`` reads).

    ``salt`` is a stable text of the definition: the name, the arm names and their weights, not what the arms
    write. The arms are drawn with it, so editing an arm's statements keeps every unit in its arm, while renaming
    the experiment or an arm, or changing the split, draws them all again."""

    name: str
    line: int
    arms: tuple[CompiledArm, ...]
    guardrails: tuple[tuple[str, Decimal], ...]
    salt: str

    @property
    def control(self) -> str:
        return self.arms[0].name

    def arm(self, name: str) -> CompiledArm:
        """The arm called ``name``; KeyError when there is none."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    name: str
    source_hash: str
    version: int | None
    segments: tuple[str, ...]
    plans: tuple[CompiledPlan, ...]
    timing: PolicyTiming
    holdout_percent: Decimal
    warnings: tuple[PolicyWarning, ...]
    python_source: str
    #: ``decide(facts) -> Decision``: segment, offers and the steps whose conditions hold, for facts with
    #: ``decline`` filled in. The generated function itself (no wrapper: it runs once per case in batches).
    decide: DecideFn = field(repr=False)
    _explain: ExplainFn = field(repr=False)
    _segment_plan: tuple[int, ...] = field(repr=False)  # segment index -> its plan, else plan otherwise (-1: none)
    _fallback_plan: int = field(repr=False)
    _conditions: tuple[tuple[str, int, str], ...] = field(repr=False)
    #: the policy's experiment block, if it has one
    experiment: CompiledExperiment | None = None
    #: ``holdout 5% with retries``: held-out cases keep the plan's card retries (still no messages, no escalation)
    holdout_keeps_retries: bool = False

    def plan_for(self, segment_index: int) -> CompiledPlan | None:
        index = self._segment_plan[segment_index] if segment_index >= 0 else self._fallback_plan
        return self.plans[index] if index >= 0 else None

    def explain(self, facts: Mapping[str, Any]) -> list[ConditionResult]:
        """Every condition of the policy, in source order, with whether it holds for these facts."""
        values = self._explain(facts)
        return [
            ConditionResult(kind, line, text, value)
            for (kind, line, text), value in zip(self._conditions, values, strict=True)
        ]
