"""Experiments as they run (app.recovery.experiments), on SQLite and MariaDB: a version with an experiment block
starts it when activated; cases are assigned sticky per customer and planned with their arm; exposure is the first
message actually sent; the read counts exposed cases only; a guardrail stops a harmful arm (its waiting messages
cancelled, its new cases planned with the control, the evidence audited); a person stops the test or promotes a
winner into a version that waits for approval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.accounts.users import create_user
from app.models import ArmAssignment, AuditEntry, ConsentEvent, Experiment, OutboxMessage, PolicyVersion, RecoveryCase
from app.recovery import experiments, policies
from app.recovery.planning import plan_cases
from experiments.readout import Metric
from rules.case_states import CaseState
from tests.builders import make_case, make_customer, make_transaction

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)

POLICY = """\
policy "trial"
  segment everyone otherwise
  business hours mon-sun 00:00-23:59
  quiet hours 23:59-00:00
  plan for everyone
    step after 1h via email template "payment_failed"
    step after 2d via email template "final_notice"
    give up after 14d
  end
  experiment "sms first"
    arm control 50%
    arm sms_first 50%
      plan for everyone
        step after 1h via sms template "reminder_short"
        step after 2d via email template "final_notice"
        give up after 14d
      end
    end
    guardrail opt_out 2%
  end
end
"""


def _cases(n_customers: int, per_customer: int = 1, *, start: int = 0) -> list[RecoveryCase]:
    cases = []
    for i in range(start, start + n_customers):
        customer = make_customer(email=f"trial{i}@example.com", phone_e164=f"+1415555{i:04d}", country="US",
                                 timezone_explicit="America/New_York")
        for k in range(per_customer):
            tx = make_transaction(customer=customer, gateway_transaction_id=f"trial-{i}-{k}", amount_minor=5000,
                                  failed_at=NOW - timedelta(minutes=5))
            cases.append(make_case(transaction=tx, customer=customer))
    return cases


def _plan(db, cases: list[RecoveryCase]) -> None:
    db.session.commit()
    plan_cases([c.id for c in cases], now=NOW)


def _audit(db, action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)
                                   .order_by(AuditEntry.id)))


def _send_all(db, case_ids: list[int], at: datetime) -> None:
    """The first step of each case goes (what a dispatch run records)."""
    for row in db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id.in_(case_ids),
                                                                 OutboxMessage.step_n == 1)):
        row.state = "sent"
        row.sent_at = at
    db.session.commit()


def test_activation_starts_the_experiment_and_cases_are_assigned_per_customer(db):
    version = policies.activate_text("trial", POLICY, actor=None, note="test")
    row = db.session.scalar(sa.select(Experiment))
    assert row is not None and row.status == "running" and row.control == "control"
    assert row.started_version_id == version.id and row.planned_units > 100
    assert [a["name"] for a in row.arms] == ["control", "sms_first"]
    assert _audit(db, "experiment.started")[0].details["experiment"] == "sms first"

    cases = _cases(60, per_customer=2)
    _plan(db, cases)
    assignments = db.session.scalars(sa.select(ArmAssignment)).all()
    assert len(assignments) == 120
    by_customer: dict[int, set[str]] = {}
    for a in assignments:
        by_customer.setdefault(a.customer_id, set()).add(a.arm)
        assert a.policy_version_id == version.id and a.unit == f"customer:{a.customer_id}"
        assert a.exposed_at is None
    assert all(len(arms) == 1 for arms in by_customer.values()), "a customer's cases share one arm"
    arms = [next(iter(a)) for a in by_customer.values()]
    assert 15 <= arms.count("sms_first") <= 45
    # each arm's plan is its own: the first message goes by SMS in sms_first, by email in control
    for a in assignments:
        first = db.session.scalar(sa.select(OutboxMessage.channel).where(OutboxMessage.case_id == a.case_id,
                                                                         OutboxMessage.step_n == 1))
        assert first == ("sms" if a.arm == "sms_first" else "email")

    # the case's timeline says which arm the plan drew, with the way to the results
    from app.recovery.case_timeline import case_timeline

    planned = next(e for e in case_timeline(db.session.get(RecoveryCase, assignments[0].case_id)) if e.kind == "plan")
    assert planned.detail["experiment"] == {"name": "sms first", "arm": assignments[0].arm, "reassigned_from": None,
                                            "experiment_id": row.id}

    # a second activation of the same text continues the experiment; the same name with another split starts anew
    policies.activate_text("trial", POLICY + "\n", actor=None, note="same test")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Experiment)) == 1
    resplit = POLICY.replace("arm control 50%", "arm control 70%").replace("arm sms_first 50%", "arm sms_first 30%")
    policies.activate_text("trial", resplit, actor=None, note="new split")
    rows = db.session.scalars(sa.select(Experiment).order_by(Experiment.id)).all()
    assert [r.status for r in rows] == ["ended", "running"]
    assert "version 3 was activated without it" in rows[0].end_reason


def test_exposure_is_the_first_message_sent_and_only_exposed_cases_count(db):
    policies.activate_text("trial", POLICY, actor=None, note="test")
    cases = _cases(40)
    _plan(db, cases)
    sent = [c.id for c in cases[:30]]
    _send_all(db, sent, NOW + timedelta(hours=1))
    row = db.session.scalar(sa.select(Experiment))
    found = experiments.read(row)
    db.session.commit()
    assert found.exposed == 30
    exposed = db.session.scalars(sa.select(ArmAssignment).where(ArmAssignment.exposed_at.is_not(None))).all()
    assert {a.case_id for a in exposed} == set(sent)
    assert all(a.exposed_at.replace(tzinfo=UTC) == NOW + timedelta(hours=1) for a in exposed)
    assert sum(arm.assigned for arm in found.arms) == 40

    # recovered cases count as conversions with their amount
    paid = db.session.get(RecoveryCase, sent[0])
    paid.state = CaseState.RECOVERED.value
    paid.recovered_amount_minor = 5000
    paid.closed_at = NOW + timedelta(hours=3)
    db.session.commit()
    found = experiments.read(row)
    arm = next(a for a in found.arms if a.data.conversions)
    assert arm.data.conversions == 1 and arm.recovered_minor == 5000
    assert arm.data.sum_seconds_to_recover == int(timedelta(hours=3, minutes=5).total_seconds())
    assert found.readout is not None and found.readout.sample_ratio.p_value > 0.001


def test_a_guardrail_stops_a_harmful_arm(db):
    policies.activate_text("trial", POLICY, actor=None, note="test")
    cases = _cases(400)
    _plan(db, cases)
    _send_all(db, [c.id for c in cases], NOW + timedelta(hours=1))
    harmed = db.session.scalars(sa.select(ArmAssignment).where(ArmAssignment.arm == "sms_first")).all()
    for a in harmed[: len(harmed) // 3]:  # a third of the SMS arm opts out; nobody in control does
        db.session.add(ConsentEvent(customer_id=a.customer_id, channel="sms", action="opt_out", source="sms_stop",
                                    at=NOW + timedelta(hours=2)))
    db.session.commit()
    waiting_before = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.case_id.in_([a.case_id for a in harmed]), OutboxMessage.state == "scheduled"))
    assert waiting_before > 0

    result = experiments.check_running()
    assert result["stopped"] == ["sms first/sms_first"]
    row = db.session.scalar(sa.select(Experiment))
    assert row.stopped_arm_names == ["sms_first"] and row.status == "running"
    entry = _audit(db, "experiment.arm_stopped")[0]
    assert entry.actor == "guardrail" and entry.details["arm"] == "sms_first"
    assert "opt_out" in entry.details["why"] and entry.details["result"]["arms"]["sms_first"]["events"]["stop"] > 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.case_id.in_([a.case_id for a in harmed]), OutboxMessage.state == "scheduled")) == 0
    # control's messages still wait
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).join(
        ArmAssignment, ArmAssignment.case_id == OutboxMessage.case_id).where(
        ArmAssignment.arm == "control", OutboxMessage.state == "scheduled")) > 0
    # a second check stops nothing more
    assert experiments.check_running()["stopped"] == []

    # new cases of customers drawn to the stopped arm are planned with the control and not counted
    before = db.session.scalar(sa.select(sa.func.count()).select_from(ArmAssignment))
    late = _cases(60, start=1000)
    _plan(db, late)
    assigned = db.session.scalars(sa.select(ArmAssignment.arm).where(
        ArmAssignment.case_id.in_([c.id for c in late]))).all()
    assert set(assigned) == {"control"} and before + len(assigned) < before + 60
    firsts = db.session.scalars(sa.select(OutboxMessage.channel).where(
        OutboxMessage.case_id.in_([c.id for c in late]), OutboxMessage.step_n == 1)).all()
    assert set(firsts) == {"email"}


def test_stop_and_promote_leave_an_audited_trail(db):
    author = create_user("ann.author@example.com", "a long enough password 1", ["author"], name="Ann")
    approver = create_user("abe.approver@example.com", "a long enough password 2", ["approver"], name="Abe")
    policies.activate_text("trial", POLICY, actor=None, note="test")
    cases = _cases(80)
    _plan(db, cases)
    _send_all(db, [c.id for c in cases], NOW + timedelta(hours=1))
    row = db.session.scalar(sa.select(Experiment))

    with pytest.raises(experiments.ExperimentServiceError, match="no arm"):
        experiments.promote(row, "sms_last", actor=author)
    version = experiments.promote(row, "sms_first", actor=author, note="SMS wins")
    assert version.status == "pending_approval" and version.author_id == author.id
    assert "experiment" not in version.source and 'via sms template "reminder_short"' in version.source
    assert "sms_first" in version.note
    entry = _audit(db, "experiment.promoted")[0]
    assert entry.details["draft_version"] == version.number and "arms" in entry.details["result"]
    assert row.status == "promoted" and row.promoted_version_id == version.id

    # four eyes as always: the author cannot approve their own promotion; the approver can, then activate
    with pytest.raises(policies.PolicyServiceError):
        policies.approve(version.id, actor=author, reason="mine")
    policies.approve(version.id, actor=approver, reason="the evidence holds")
    policies.activate(version.id, actor=approver)
    row = db.session.get(Experiment, row.id)
    assert row.status == "promoted" and row.ended_at is not None and "active" in row.end_reason

    # the winner plans every new case: SMS first, and nobody is assigned any more
    late = _cases(10, start=500)
    _plan(db, late)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ArmAssignment).where(
        ArmAssignment.case_id.in_([c.id for c in late]))) == 0
    assert set(db.session.scalars(sa.select(OutboxMessage.channel).where(
        OutboxMessage.case_id.in_([c.id for c in late]), OutboxMessage.step_n == 1))) == {"sms"}


def test_stopping_the_test_sends_everyone_the_control(db):
    policies.activate_text("trial", POLICY, actor=None, note="test")
    cases = _cases(40)
    _plan(db, cases)
    row = db.session.scalar(sa.select(Experiment))
    with pytest.raises(experiments.ExperimentServiceError, match="why"):
        experiments.stop(row, actor="abe@example.com", why="  ")
    cancelled = experiments.stop(row, actor="abe@example.com", why="the SMS budget ran out")
    db.session.commit()
    assert cancelled > 0 and row.status == "stopped"
    assert _audit(db, "experiment.stopped")[0].details["why"] == "the SMS budget ran out"
    with pytest.raises(experiments.ExperimentServiceError, match="stopped already"):
        experiments.stop(row, actor="abe@example.com", why="again")
    late = _cases(20, start=300)
    _plan(db, late)
    assert set(db.session.scalars(sa.select(OutboxMessage.channel).where(
        OutboxMessage.case_id.in_([c.id for c in late]), OutboxMessage.step_n == 1))) == {"email"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PolicyVersion)) == 1


def test_cuped_narrows_the_amount_interval_with_past_payments(db):
    """Customers who paid more before recover, and more, now: adjusting with their past 90 days of payments narrows the
    amount-per-case interval (the expected difference stays)."""
    policies.activate_text("trial", POLICY, actor=None, note="test")
    cases = _cases(240)
    _plan(db, cases)
    _send_all(db, [c.id for c in cases], NOW + timedelta(hours=1))
    for k, case in enumerate(cases):
        past = 1000 * (1 + k % 7)
        make_transaction(customer_id=case.customer_id, status="approved", amount_minor=past,
                         gateway_transaction_id=f"past-{k}", failed_at=NOW - timedelta(days=20))
        make_transaction(customer_id=case.customer_id, status="approved", amount_minor=99_999,
                         gateway_transaction_id=f"long-ago-{k}", failed_at=NOW - timedelta(days=200))
        if k % 7 >= 3:  # the customers who paid more before are the ones who pay now
            case.state = CaseState.RECOVERED.value
            case.recovered_amount_minor = past + 50 * (k % 3)
            case.closed_at = NOW + timedelta(hours=4)
    db.session.commit()
    row = db.session.scalar(sa.select(Experiment))
    plain = experiments.read(row)
    adjusted = experiments.read(row, cuped=True)
    assert plain.readout is not None and adjusted.readout is not None
    assert plain.readout.cuped_theta is None and adjusted.readout.cuped_theta is not None
    assert adjusted.readout.cuped_theta > 0
    a = plain.readout.comparison(Metric.AMOUNT_PER_CASE, "sms_first").interval
    b = adjusted.readout.comparison(Metric.AMOUNT_PER_CASE, "sms_first").interval
    assert (b.upper - b.lower) < 0.8 * (a.upper - a.lower)
    # the recovery rate itself is not adjusted
    assert (plain.readout.comparison(Metric.RECOVERY_RATE, "sms_first").interval
            == adjusted.readout.comparison(Metric.RECOVERY_RATE, "sms_first").interval)
