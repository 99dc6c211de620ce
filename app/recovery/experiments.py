"""Experiments as they run: the row behind a policy's ``experiment`` block, the arm each case got, exposure, the
read of the results, stopping an arm (by a guardrail or a person) or the whole test, and promoting a winner.

The language and the draws are pure (``dsl`` compiles the block into ``rules.policy.CompiledExperiment``;
``rules.planner`` draws the arm from the customer); the statistics are pure too (``experiments``). This module is
the glue with the database: it never decides an arm and never computes a statistic itself.

- An experiment row is made (or found: ``salt`` = name, arm names and weights) when a version carrying the block is
  activated, or failing that when it first plans a case. Activating a version without it, or with another
  definition, ends the running one.
- A case planned into an arm is recorded with the arm, the unit it was drawn from and the policy version. A case
  drawn to a stopped arm is planned with the control and recorded nowhere: it is no evidence about either.
- Exposure is the case's first message actually sent (the outbox's ``sent_at``), stamped before every read and by
  the periodic check; only exposed cases are compared, so deferrals and cases paid before any message cannot bias
  the arms.
- The periodic check (:func:`check_running`) stops an arm a guardrail condemns: its cases' waiting messages are
  cancelled, its new cases go to control, the audit log keeps the evidence.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.audit import record
from app.extensions import db
from app.models import (
    ArmAssignment,
    ConsentEvent,
    Experiment,
    OutboxMessage,
    Policy,
    PolicyVersion,
    RecoveryCase,
    Transaction,
)
from app.models.types import as_utc, utcnow
from app.outbox.states import OutboxState
from experiments.arms import ArmData, ExperimentError
from experiments.guardrails import Guardrail
from experiments.power import History, required_units
from experiments.readout import Readout, read_experiment
from rules.case_states import ACTIVE, CaseState
from rules.vocabulary import CHANNELS, OutboxTask

log = logging.getLogger(__name__)

#: the rise in recovery rate an experiment is planned to detect, when nothing else is said (5 points)
PLANNED_EFFECT = 0.05
#: the recovery rate assumed when the history is too short to say (fewer than this many closed cases)
DEFAULT_BASELINE = 0.25
MIN_HISTORY = 50
HISTORY_DAYS = 28
#: guardrail events, each by what marks it (``ArmData.events`` keys, ``experiments.guardrails.GuardrailMetric``)
STOP_SOURCES = ("sms_stop", "whatsapp_stop", "stop")
COMPLAINT_SOURCES = ("complaint", "spam_complaint")


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # stopped by a person: every new case goes to control
    ENDED = "ended"  # a version without it (or with another definition) was activated
    PROMOTED = "promoted"  # a winner was drafted as a new version (the test runs until that version is active)


LIVE = (ExperimentStatus.RUNNING, ExperimentStatus.PROMOTED)


class ExperimentServiceError(ValueError):
    pass


# --- the row behind a definition --------------------------------------------------------------------------------


def _definition(compiled: Any) -> Any | None:
    return getattr(compiled, "experiment", None)


def history(policy_id: int | None = None, *, now: datetime | None = None) -> History | None:
    """The last four weeks of cases (closed ones for the rate): what the power calculator plans with."""
    now = now or utcnow()
    since = now - timedelta(days=HISTORY_DAYS)
    query = sa.select(sa.func.count(), sa.func.sum(sa.case((RecoveryCase.state == CaseState.RECOVERED, 1),
                                                           else_=0))).where(RecoveryCase.opened_at >= since)
    cases, recovered = db.session.execute(query).one()
    closed, closed_recovered = db.session.execute(
        query.where(RecoveryCase.state.notin_(tuple(ACTIVE)))).one()
    if not cases:
        return None
    if (closed or 0) >= MIN_HISTORY:
        rate_cases, rate_recovered = int(closed), int(closed_recovered or 0)
    else:
        rate_cases, rate_recovered = 1000, int(1000 * DEFAULT_BASELINE)
    # the same rate, scaled to all the cases that came (the daily volume counts open cases too)
    scaled = round(int(cases) * rate_recovered / rate_cases)
    return History(cases=int(cases), recovered=min(int(cases), scaled), days=HISTORY_DAYS)


def weights_of(definition_arms: Iterable[Any]) -> dict[str, float]:
    return {arm.name: float(arm.weight) / 100 for arm in definition_arms}


def power_plan(compiled: Any, *, effect: float = PLANNED_EFFECT) -> dict[str, Any] | None:
    """What the editor shows under an experiment: the cases and days needed to see ``effect``, from the history."""
    definition = _definition(compiled)
    if definition is None:
        return None
    found = history()
    baseline = found.baseline_rate if found else DEFAULT_BASELINE
    weights = weights_of(definition.arms)
    try:
        units = required_units(baseline, effect, weights, definition.control)
    except ExperimentError as error:
        return {"error": str(error)}
    daily = found.daily_units if found else None
    return {"baseline_rate": baseline, "effect": effect, "units": units, "daily_units": daily,
            "days": -(-units // max(1, round(daily))) if daily else None, "history": found is not None,
            "arms": [(arm.name, arm.weight) for arm in definition.arms]}


def experiment_for(version: PolicyVersion, compiled: Any, *, actor: str = "system") -> Experiment | None:
    """The row for the version's experiment, made the first time (its planned size from the power calculator)."""
    definition = _definition(compiled)
    if definition is None:
        return None
    found = _find(version.policy_id, definition.salt)
    if found is not None:
        return found
    baseline_history = history()
    baseline = baseline_history.baseline_rate if baseline_history else DEFAULT_BASELINE
    weights = weights_of(definition.arms)
    try:
        planned = required_units(baseline, PLANNED_EFFECT, weights, definition.control)
    except ExperimentError:
        planned = 1000
    row = Experiment(
        policy_id=version.policy_id, name=definition.name, salt=definition.salt, control=definition.control,
        arms=[{"name": arm.name, "weight": str(arm.weight)} for arm in definition.arms],
        guardrails=[{"metric": metric, "max_harm": str(harm)} for metric, harm in definition.guardrails],
        status=ExperimentStatus.RUNNING.value, planned_units=planned, baseline_rate=f"{baseline:.4f}",
        started_at=utcnow(), started_version_id=version.id, stopped_arms=[],
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
            db.session.flush()
    except IntegrityError:  # made meanwhile by another worker
        return _find(version.policy_id, definition.salt)
    record(actor, "experiment.started", "experiment", row.id,
           {"policy": version.policy.name, "version": version.number, "experiment": row.name, "arms": row.arms,
            "guardrails": row.guardrails, "planned_cases": planned, "baseline_rate": row.baseline_rate})
    return row


def _find(policy_id: int, salt: str) -> Experiment | None:
    return db.session.scalar(sa.select(Experiment).where(Experiment.policy_id == policy_id, Experiment.salt == salt))


def on_activation(version: PolicyVersion, compiled: Any, *, actor: str) -> None:
    """A version becomes active: its experiment runs (made or continued); any other live one of the policy ends."""
    current = experiment_for(version, compiled, actor=actor)
    others = db.session.scalars(sa.select(Experiment).where(
        Experiment.policy_id == version.policy_id, Experiment.status.in_(LIVE), Experiment.ended_at.is_(None),
        *([Experiment.id != current.id] if current is not None else []))).all()
    for other in others:
        other.ended_at = utcnow()
        other.ended_by = actor
        if other.promoted_version_id == version.id:  # its winner now runs for everyone
            other.end_reason = f"its winner {other.promoted_arm!r} is active as version {version.number}"
        else:
            other.status = ExperimentStatus.ENDED.value
            other.end_reason = f"version {version.number} was activated without it"
        record(actor, "experiment.ended", "experiment", other.id,
               {"experiment": other.name, "reason": other.end_reason, "result": summary(other)})


def is_live(row: Experiment) -> bool:
    """Still deciding arms: running, or promoted while the winner's version waits for approval."""
    return row.status in LIVE and row.ended_at is None


def stopped_arms(row: Experiment | None) -> tuple[str, ...]:
    """The arms no new case may get: those stopped, or every arm but control once the test is stopped or ended."""
    if row is None:
        return ()
    if is_live(row):
        return tuple(row.stopped_arm_names)
    return tuple(arm["name"] for arm in row.arms if arm["name"] != row.control)


def record_assignment(case: RecoveryCase, plan: Any, version: PolicyVersion, row: Experiment | None,
                      now: datetime) -> ArmAssignment | None:
    """Keep the arm the plan drew for this case (nothing for a case sent to control because its arm is stopped)."""
    drawn = getattr(plan, "experiment", None)
    if row is None or drawn is None or drawn.reassigned_from:
        return None
    assignment = ArmAssignment(experiment_id=row.id, case_id=case.id, customer_id=case.customer_id,
                               unit=drawn.unit[:80], arm=drawn.arm, policy_version_id=version.id, assigned_at=now)
    db.session.add(assignment)
    return assignment


# --- exposure and the read ----------------------------------------------------------------------------------------


def stamp_exposures(experiment_ids: Sequence[int] | None = None) -> int:
    """Exposure = the case's first reminder actually sent (a step of its plan; a receipt after a payment is none).
    One statement for every assignment still unexposed."""
    first_send = (sa.select(sa.func.min(OutboxMessage.sent_at))
                  .where(OutboxMessage.case_id == ArmAssignment.case_id, OutboxMessage.sent_at.is_not(None),
                         OutboxMessage.channel.in_(CHANNELS),
                         OutboxMessage.step_n.is_not(None))  # a step of the plan: a receipt exposes nobody
                  .scalar_subquery())
    statement = (sa.update(ArmAssignment).where(ArmAssignment.exposed_at.is_(None)).values(exposed_at=first_send)
                 .execution_options(synchronize_session=False))
    if experiment_ids is not None:
        statement = statement.where(ArmAssignment.experiment_id.in_(list(experiment_ids)))
    result = db.session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class _Arm:
    units: int = 0
    conversions: int = 0
    sum_amount: int = 0
    sum_amount_sq: int = 0
    seconds: int = 0
    seconds_sq: int = 0
    pre_sum: int = 0
    pre_sum_sq: int = 0
    cross_sum: int = 0
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_day: dict[date, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def data(self, name: str) -> ArmData:
        return ArmData(name, self.units, self.conversions, self.sum_amount, self.sum_amount_sq,
                       pre_sum=self.pre_sum, pre_sum_sq=self.pre_sum_sq, cross_sum=self.cross_sum,
                       sum_seconds_to_recover=self.seconds, sum_seconds_to_recover_sq=self.seconds_sq,
                       events=dict(self.events))


@dataclass(frozen=True)
class ArmResult:
    name: str
    weight: Decimal
    control: bool
    stopped: bool
    assigned: int
    data: ArmData
    recovered_minor: int

    @property
    def rate(self) -> float | None:
        return self.data.rate if self.data.units else None


@dataclass(frozen=True)
class ExperimentRead:
    experiment: Experiment
    arms: tuple[ArmResult, ...]
    readout: Readout | None
    why_no_readout: str | None
    series: dict[str, list[tuple[str, float]]]  # arm -> [(day, cumulative recovery rate)]
    currencies: tuple[str, ...]  # of the exposed cases: amounts per case mean something only with one

    @property
    def exposed(self) -> int:
        return sum(arm.data.units for arm in self.arms)


def _events(rows: list[tuple[int, int | None, datetime]]) -> dict[int, set[str]]:
    """Guardrail events per case: consent changes of the case's customer after its assignment, and card retries."""
    customers = {customer for _, customer, _ in rows if customer is not None}
    found: dict[int, set[str]] = defaultdict(set)
    if not rows:
        return found
    by_customer: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for chunk in _chunks(sorted(customers), 900):
        for customer_id, at, source in db.session.execute(
                sa.select(ConsentEvent.customer_id, ConsentEvent.at, ConsentEvent.source)
                .where(ConsentEvent.customer_id.in_(chunk), ConsentEvent.action == "opt_out")):
            by_customer[customer_id].append((as_utc(at), source or ""))
    cases = [case for case, _, _ in rows]
    retried: set[int] = set()
    for chunk in _chunks(cases, 900):
        retried.update(db.session.scalars(
            sa.select(OutboxMessage.case_id).where(OutboxMessage.case_id.in_(chunk),
                                                   OutboxMessage.channel == OutboxTask.PAYMENT_RETRY.value,
                                                   OutboxMessage.state == OutboxState.SENT.value)))
    for case, customer, assigned in rows:
        for at, source in by_customer.get(customer or -1, ()):
            if at >= as_utc(assigned):
                found[case].add("opt_out")
                if source in STOP_SOURCES:
                    found[case].add("stop")
                if source in COMPLAINT_SOURCES:
                    found[case].add("complaint")
        if case in retried:
            found[case].add("retry_fee")
    return found


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: CUPED's covariate: what the customer paid in this long before the case was assigned
PRE_PERIOD = timedelta(days=90)


def _pre_period(rows: list[tuple[int | None, datetime]]) -> list[int]:
    """Per (customer, assigned at): the customer's approved payments in the :data:`PRE_PERIOD` before, in minor
    units (the covariate CUPED adjusts the amount recovered with; it cannot depend on the arm)."""
    customers = sorted({customer for customer, _ in rows if customer is not None})
    paid: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for chunk in _chunks(customers, 900):
        for customer_id, at, amount in db.session.execute(
                sa.select(Transaction.customer_id, Transaction.failed_at, Transaction.amount_minor)
                .where(Transaction.customer_id.in_(chunk), Transaction.status == "approved")):
            paid[customer_id].append((as_utc(at), int(amount or 0)))
    out = []
    for customer, assigned in rows:
        end = as_utc(assigned)
        out.append(sum(amount for at, amount in paid.get(customer or -1, ()) if end - PRE_PERIOD <= at < end))
    return out


def read(row: Experiment, *, seed: int = 0, cuped: bool = False) -> ExperimentRead:
    """Everything the results page shows, as of now (exposures stamped first). ``cuped``: the amount recovered per
    case adjusted with each customer's payments in the 90 days before (less variance, the same expected
    difference)."""
    stamp_exposures([row.id])
    assigned = dict(db.session.execute(
        sa.select(ArmAssignment.arm, sa.func.count()).where(ArmAssignment.experiment_id == row.id)
        .group_by(ArmAssignment.arm)).all())
    rows = db.session.execute(
        sa.select(ArmAssignment.arm, ArmAssignment.case_id, ArmAssignment.customer_id, ArmAssignment.assigned_at,
                  ArmAssignment.exposed_at, RecoveryCase.state, RecoveryCase.recovered_amount_minor,
                  RecoveryCase.closed_at, RecoveryCase.currency, Transaction.failed_at)
        .join(RecoveryCase, RecoveryCase.id == ArmAssignment.case_id)
        .join(Transaction, Transaction.id == RecoveryCase.transaction_id)
        .where(ArmAssignment.experiment_id == row.id, ArmAssignment.exposed_at.is_not(None))
    ).all()
    events = _events([(r.case_id, r.customer_id, r.assigned_at) for r in rows])
    pre = _pre_period([(r.customer_id, r.assigned_at) for r in rows]) if cuped else [0] * len(rows)
    arms: dict[str, _Arm] = {arm["name"]: _Arm() for arm in row.arms}
    currencies: set[str] = set()
    for r, before in zip(rows, pre, strict=True):
        arm = arms.setdefault(r.arm, _Arm())
        arm.units += 1
        arm.pre_sum += before
        arm.pre_sum_sq += before * before
        day = as_utc(r.exposed_at).date()
        arm.by_day[day][0] += 1
        currencies.add(r.currency)
        if r.state == CaseState.RECOVERED:
            amount = int(r.recovered_amount_minor or 0)
            arm.conversions += 1
            arm.sum_amount += amount
            arm.sum_amount_sq += amount * amount
            arm.cross_sum += amount * before
            arm.by_day[day][1] += 1
            if r.closed_at is not None:
                seconds = max(0, int((as_utc(r.closed_at) - as_utc(r.failed_at)).total_seconds()))
                arm.seconds += seconds
                arm.seconds_sq += seconds * seconds
        for metric in events.get(r.case_id, ()):
            arm.events[metric] += 1
    stopped = set(row.stopped_arm_names)
    results = tuple(
        ArmResult(name, Decimal(weight), name == row.control, name in stopped, int(assigned.get(name, 0)),
                  arms[name].data(name), arms[name].sum_amount)
        for name, weight in ((arm["name"], arm["weight"]) for arm in row.arms))
    readout, why = None, None
    empty = [arm.name for arm in results if not arm.data.units]
    if empty:
        why = "waiting for every arm's first exposed case"
    else:
        try:
            readout = read_experiment([arm.data for arm in results], row.control,
                                      {arm.name: float(arm.weight) / 100 for arm in results},
                                      float(max(row.planned_units, 1)), guardrails=guardrails_of(row), seed=seed,
                                      cuped=cuped)
        except ExperimentError as error:
            why = str(error)
    series = {}
    for arm_result in results:
        cumulative_n = cumulative_paid = 0
        points = []
        for day in sorted(arms[arm_result.name].by_day):
            n, paid = arms[arm_result.name].by_day[day]
            cumulative_n += n
            cumulative_paid += paid
            points.append((day.isoformat(), cumulative_paid / cumulative_n))
        series[arm_result.name] = points
    return ExperimentRead(row, results, readout, why, series, tuple(sorted(currencies)))


def guardrails_of(row: Experiment) -> list[Guardrail]:
    return [Guardrail(g["metric"], float(Decimal(str(g["max_harm"])))) for g in row.guardrails or ()]


def summary(row: Experiment) -> dict[str, Any]:
    """The result as of now, for the audit log: per arm its counts and, against control, the intervals."""
    found = read(row)
    out: dict[str, Any] = {"as_of": utcnow().isoformat(), "arms": {}}
    for arm in found.arms:
        out["arms"][arm.name] = {"assigned": arm.assigned, "exposed": arm.data.units,
                                 "recovered": arm.data.conversions, "recovered_minor": arm.recovered_minor,
                                 "events": dict(arm.data.events)}
    if found.readout is not None:
        out["sample_ratio_p"] = _finite(found.readout.sample_ratio.p_value)
        out["comparisons"] = [
            {"metric": str(c.metric), "variant": c.variant, "difference": _finite(c.difference.effect),
             "interval": [_finite(c.interval.lower), _finite(c.interval.upper)], "significant": c.significant,
             "chance_to_beat_control": _finite(c.bayes.chance_to_beat)}
            for c in found.readout.comparisons]
    else:
        out["why_no_readout"] = found.why_no_readout
    return out


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded interval end (too few cases yet) is kept as null."""
    return value if math.isfinite(value) else None


# --- acting on it ---------------------------------------------------------------------------------------------------


def _cancel_arm(row: Experiment, arm: str, why: str) -> int:
    from app.recovery.case_lifecycle import cancel_pending

    cases = db.session.scalars(
        sa.select(ArmAssignment.case_id).join(RecoveryCase, RecoveryCase.id == ArmAssignment.case_id)
        .where(ArmAssignment.experiment_id == row.id, ArmAssignment.arm == arm,
               RecoveryCase.state.in_(tuple(ACTIVE)))).all()
    return sum(cancel_pending(case_id, why) for case_id in cases)


def stop_arm(row: Experiment, arm: str, *, actor: str, why: str, evidence: dict[str, Any] | None = None) -> int:
    """No new case gets ``arm``; what its open cases still had waiting is cancelled. Returns the messages
    cancelled."""
    names = [a["name"] for a in row.arms]
    if arm not in names:
        raise ExperimentServiceError(f"experiment {row.name!r} has no arm {arm!r}; its arms are {', '.join(names)}")
    if arm == row.control:
        raise ExperimentServiceError("the control cannot be stopped: stop the whole experiment instead")
    if not is_live(row):
        raise ExperimentServiceError(f"experiment {row.name!r} is {row.status} already")
    if arm in row.stopped_arm_names:
        raise ExperimentServiceError(f"arm {arm!r} is stopped already")
    row.stopped_arms = [*(row.stopped_arms or []), {"arm": arm, "at": utcnow().isoformat(), "by": actor, "why": why}]
    cancelled = _cancel_arm(row, arm, f"experiment {row.name}: arm {arm} stopped")
    record(actor, "experiment.arm_stopped", "experiment", row.id,
           {"experiment": row.name, "arm": arm, "why": why, "messages_cancelled": cancelled,
            "result": evidence if evidence is not None else summary(row)})
    return cancelled


def stop(row: Experiment, *, actor: str, why: str) -> int:
    """The whole test stops: every new case gets the control; the variants' waiting messages are cancelled."""
    if not is_live(row):
        raise ExperimentServiceError(f"experiment {row.name!r} is {row.status} already")
    if not why.strip():
        raise ExperimentServiceError("say why you stop the experiment")
    evidence = summary(row)
    cancelled = sum(_cancel_arm(row, arm["name"], f"experiment {row.name} stopped")
                    for arm in row.arms if arm["name"] != row.control and arm["name"] not in row.stopped_arm_names)
    row.status = ExperimentStatus.STOPPED.value
    row.ended_at = utcnow()
    row.ended_by = actor
    row.end_reason = why.strip()[:500]
    record(actor, "experiment.stopped", "experiment", row.id,
           {"experiment": row.name, "why": row.end_reason, "messages_cancelled": cancelled, "result": evidence})
    return cancelled


def promote(row: Experiment, arm: str, *, actor: Any, note: str = "") -> PolicyVersion:
    """Draft a new version of the policy from the winning arm (the experiment block gone, the arm's statements in
    place), sent for the usual approval; the audit log keeps the result as of promotion."""
    import dsl
    from app.recovery import policies

    names = [a["name"] for a in row.arms]
    if arm not in names:
        raise ExperimentServiceError(f"experiment {row.name!r} has no arm {arm!r}; its arms are {', '.join(names)}")
    if row.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
        raise ExperimentServiceError(f"experiment {row.name!r} is {row.status}: nothing to promote")
    policy = db.session.get(Policy, row.policy_id)
    active = policy.active_version if policy is not None else None
    if active is None:
        raise ExperimentServiceError("the policy has no active version to promote from")
    try:
        source = dsl.promote_arm(active.source, arm)
    except ValueError as error:
        raise ExperimentServiceError(f"the active version cannot be promoted from: {error}") from None
    evidence = summary(row)
    text = f"promote {arm!r} of experiment {row.name!r}" + (f": {note.strip()}" if note.strip() else "")
    version = policies._new_version(policy, source, actor=actor, note=text[:500], based_on=active)
    row.status = ExperimentStatus.PROMOTED.value
    row.promoted_arm = arm
    row.promoted_version_id = version.id
    record(policies._who(actor), "experiment.promoted", "experiment", row.id,
           {"experiment": row.name, "arm": arm, "draft_version": version.number, "note": note.strip(),
            "result": evidence})
    db.session.commit()
    return version


def check_running(now: datetime | None = None) -> dict[str, Any]:
    """The periodic check: stamp exposures, read every live experiment, stop the arms a guardrail condemns."""
    stamp_exposures()
    stopped: list[str] = []
    for row in db.session.scalars(sa.select(Experiment).where(Experiment.status.in_(LIVE),
                                                              Experiment.ended_at.is_(None))).all():
        if not row.guardrails:
            continue
        found = read(row)
        if found.readout is None:
            continue
        for check in found.readout.guardrails:
            if check.stop and check.variant not in row.stopped_arm_names:
                stop_arm(row, check.variant, actor="guardrail", why=check.message, evidence=summary(row))
                stopped.append(f"{row.name}/{check.variant}")
    db.session.commit()
    if stopped:
        log.warning("guardrails stopped %s", ", ".join(stopped))
    return {"stopped": stopped}
