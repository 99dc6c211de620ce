"""Backtest: what a policy *would have done* with the real cases of the last N days.

Every case opened in the window is planned again, as of the moment its payment failed, with the policy under test
and with the active version, and the two plans are counted side by side: cases per segment, messages per channel
and per day, deferrals by reason (quiet hours, holidays, ...), payment retries and how many of them the card
networks would refuse. Each version's recoveries, in cases and in money per currency, are estimated from how similar
cases were recovered before, with their intervals, and the result says when that history is too thin to tell
(app.recovery.backtest_estimates). Nothing is stored and nothing is sent. No Flask request needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

import dsl
from app.extensions import db
from app.models import RecoveryCase, Transaction
from app.models.types import utcnow
from app.recovery.backtest_estimates import Estimates, PlannedCase, compare_versions, first_touch, measured_history
from app.recovery.planning import case_facts, contact_windows
from app.recovery.policies import active_version, compiled, fx_rates
from rules.plan import Plan
from rules.planner import FactsError
from rules.planner import plan as make_plan
from rules.vocabulary import StepAction

#: cases planned at most per run: a simulation must answer while the author waits
DEFAULT_CASE_LIMIT = 1000
#: declines after which a card must not be charged again (rules.declines "stop" kind)
NO_RETRY_KINDS = frozenset({"stop"})


@dataclass
class BacktestResult:
    label: str
    cases: int = 0
    segments: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    per_day: dict[date, Counter[str]] = field(default_factory=dict)
    deferrals: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    retries_refused: int = 0  # retries planned on cards the networks say must not be retried
    holdout: int = 0
    escalations: int = 0
    unplaced: int = 0  # steps the timing core found no allowed time for
    skipped_opted_out: int = 0
    failures: list[str] = field(default_factory=list)
    #: each case planned, as the recovery estimates see it (its cell and what it owes)
    planned: list[PlannedCase] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(self.channels.values())

    def add(self, plan: Plan, decline_kind: str | None) -> None:
        self.cases += 1
        self.segments[plan.segment or "(no segment)"] += 1
        if plan.holdout:
            self.holdout += 1
        if plan.escalation:
            self.escalations += 1
        self.skipped_opted_out += len(plan.skipped_steps)
        for step in plan.steps:
            if step.action is StepAction.RETRY_PAYMENT:
                self.retries += 1
                if decline_kind in NO_RETRY_KINDS:
                    self.retries_refused += 1
                continue
            for reason in step.deferred_by:
                self.deferrals[reason] += 1
            if step.send_at is None:
                self.unplaced += 1
                continue
            channel = step.channel.value if step.channel else "?"
            self.channels[channel] += 1
            self.per_day.setdefault(step.send_at.astimezone(UTC).date(), Counter())[channel] += 1


@dataclass
class Comparison:
    days: int
    since: datetime
    total_cases: int  # cases in the window (may exceed what was planned: see limit)
    limit: int
    tested: BacktestResult
    active: BacktestResult | None
    #: what each version would have recovered, from the measured history (None: not estimated)
    estimates: Estimates | None = None

    @property
    def segments(self) -> list[str]:
        names = set(self.tested.segments) | set(self.active.segments if self.active else ())
        return sorted(names)

    @property
    def channels(self) -> list[str]:
        names = set(self.tested.channels) | set(self.active.channels if self.active else ())
        return sorted(names)

    @property
    def deferral_reasons(self) -> list[str]:
        names = set(self.tested.deferrals) | set(self.active.deferrals if self.active else ())
        return sorted(names)

    @property
    def day_list(self) -> list[date]:
        days = set(self.tested.per_day) | set(self.active.per_day if self.active else ())
        return sorted(days)


def recent_cases(days: int, *, now: datetime | None = None,
                 limit: int = DEFAULT_CASE_LIMIT) -> tuple[list[RecoveryCase], int]:
    since = (now or utcnow()) - timedelta(days=days)
    where = RecoveryCase.opened_at >= since
    total = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase).where(where)) or 0
    cases = list(db.session.scalars(
        sa.select(RecoveryCase).where(where)
        .options(selectinload(RecoveryCase.transaction), selectinload(RecoveryCase.customer))
        .order_by(RecoveryCase.opened_at.desc()).limit(limit)))
    return cases, total


def run(policy: dsl.CompiledPolicy, cases: list[RecoveryCase], *, label: str,
        version: int | None = None) -> BacktestResult:
    result = BacktestResult(label=label)
    windows = contact_windows()  # the same defaults the planner uses, so the simulation matches what would run
    for case in cases:
        tx: Transaction = case.transaction
        try:
            # the real outbox holds what the running policy sent; the plan under test must not be capped by it
            facts = replace(case_facts(case, tx.failed_at), sent=())
            plan = make_plan(policy, facts, version=version, contact_windows=windows)
            result.add(plan, tx.decline_kind)
            result.planned.append(PlannedCase(case.id, plan.segment, first_touch(plan), tx.decline_reason,
                                              int(case.amount_due_minor), case.currency))
        except (FactsError, ValueError, KeyError) as exc:
            if len(result.failures) < 10:
                result.failures.append(f"case {case.id}: {exc}")
    return result


def compare(source: str, *, name: str | None, days: int, limit: int = DEFAULT_CASE_LIMIT,
            now: datetime | None = None) -> Comparison:
    """The draft ``source`` against the active version, on the cases of the last ``days`` days.

    Raises ``dsl.PolicyError`` when the draft does not compile (the caller shows its diagnostics)."""
    tested_policy = dsl.compile_policy(source, fx_rates=fx_rates(), filename="draft")
    cases, total = recent_cases(days, now=now, limit=limit)
    tested = run(tested_policy, cases, label="draft")
    current = active_version(name) or active_version()
    active = None
    if current is not None:
        active = run(compiled(current), cases, label=f"{current.policy.name} v{current.number}",
                     version=current.number)
    estimates = compare_versions(measured_history(now=now), (tested.label, tested.planned),
                                 (active.label, active.planned) if active is not None else None)
    return Comparison(days=days, since=(now or utcnow()) - timedelta(days=days), total_cases=total, limit=limit,
                      tested=tested, active=active, estimates=estimates)
