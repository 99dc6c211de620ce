"""The business clock: the demo moves it forward (persisted, audited); everywhere else it is the real clock."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.models import AuditEntry, OutboxMessage, Setting
from tests.builders import make_case, make_message, make_transaction

POLICY = """policy "clocked"
  segment everyone when transaction.amount >= 0 USD
  plan for everyone
    step after 2h via email template "payment_failed"
    give up after 14d
  end
end
"""


def close_to(moment: datetime, expected: datetime, slack: timedelta = timedelta(seconds=30)) -> bool:
    return abs(moment - expected) < slack


@pytest.fixture
def demo_clock(app):
    app.config["DEMO_CLOCK"] = True
    yield app
    app.config["DEMO_CLOCK"] = False


def test_the_offset_is_stored_audited_and_read_back_by_a_new_session(demo_clock, db):
    assert close_to(clock.business_now(), datetime.now(UTC))
    moved = clock.advance(timedelta(hours=1), actor="admin@example.com")
    clock.advance(timedelta(days=1), actor="admin@example.com")
    db.session.remove()  # what another process (a worker, a restarted demo) would read
    assert close_to(moved, datetime.now(UTC) + timedelta(hours=1))
    assert close_to(clock.business_now(), datetime.now(UTC) + timedelta(days=1, hours=1))
    assert db.session.get(Setting, clock.OFFSET_KEY).value == 25 * 3600
    entries = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "demo.clock_advanced")).all()
    assert [e.details["by_seconds"] for e in entries] == [3600, 86400]
    assert entries[-1].actor == "admin@example.com"


def test_the_clock_only_moves_forward_and_not_too_far(demo_clock):
    with pytest.raises(clock.ClockError, match="forward"):
        clock.advance(timedelta(0), actor="a")
    with pytest.raises(clock.ClockError, match="forward"):
        clock.advance(timedelta(hours=-1), actor="a")
    with pytest.raises(clock.ClockError, match="366 days"):
        clock.advance(timedelta(days=400), actor="a")
    with pytest.raises(clock.ClockError, match="not in the future"):
        clock.advance_to(datetime.now(UTC) - timedelta(minutes=5), actor="a")
    assert clock.offset() == timedelta(0)


def test_advancing_to_a_moment_reaches_it(demo_clock):
    target = datetime.now(UTC) + timedelta(hours=5, microseconds=654321)
    clock.advance_to(target, actor="a")
    assert target <= clock.business_now() < target + timedelta(seconds=2)
    assert target <= clock.business_clock()()


def test_a_stored_offset_is_ignored_outside_the_demo(app, db):
    db.session.add(Setting(key=clock.OFFSET_KEY, value=10 * 86400, updated_by="someone"))
    db.session.commit()
    assert not app.config["DEMO_MODE"] and not app.config["DEMO_CLOCK"]
    assert close_to(clock.business_now(), datetime.now(UTC))
    assert clock.business_clock() is clock.utcnow
    with pytest.raises(clock.ClockError, match="only be moved in the demo"):
        clock.advance(timedelta(hours=1), actor="a")
    assert db.session.get(Setting, clock.OFFSET_KEY).value == 10 * 86400


def test_the_production_config_never_honours_it(app, db):
    db.session.add(Setting(key=clock.OFFSET_KEY, value=10 * 86400, updated_by="someone"))
    db.session.commit()
    app.config.update(DEMO_MODE=True, DEMO_CLOCK=True, ENV_NAME="production")
    try:
        assert close_to(clock.business_now(), datetime.now(UTC))
    finally:
        app.config.update(DEMO_MODE=False, DEMO_CLOCK=False, ENV_NAME="testing")


def test_next_business_morning_is_nine_on_a_weekday_in_the_zone():
    friday_evening = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 19:30 in Madrid
    assert clock.next_business_morning(friday_evening, "Europe/Madrid") == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    early = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # Tuesday 07:00 in Madrid
    assert clock.next_business_morning(early, "Europe/Madrid") == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert clock.next_business_morning(early, None) == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with pytest.raises(clock.ClockError, match="not a time zone"):
        clock.next_business_morning(early, "Mars/Olympus")


def test_dispatch_sends_what_the_moved_clock_makes_due(demo_clock, db, channels):
    from app.outbox.run import dispatch_due

    due_at = clock.next_business_morning(datetime.now(UTC) + timedelta(days=1), "America/New_York")
    due_at += timedelta(hours=2)  # 11:00 on a weekday in New York, the customer's zone
    message = make_message(channel="email", scheduled_for=due_at)
    mid = message.id
    db.session.commit()
    assert dispatch_due()["claimed"] == 0
    clock.advance_to(due_at + timedelta(minutes=1), actor="demo")
    assert dispatch_due()["sent"] == 1
    assert db.session.get(OutboxMessage, mid).state == "sent"
    assert len(channels.smtp.received()) == 1


def test_planning_takes_now_from_the_business_clock(demo_clock, db):
    from app.recovery.planning import plan_cases
    from app.recovery.policies import activate_text

    activate_text("clocked", POLICY, actor=None, note="test")
    case = make_case(transaction=make_transaction(failed_at=datetime.now(UTC) - timedelta(minutes=1)))
    db.session.commit()
    ahead = clock.advance(timedelta(days=3), actor="demo")
    assert plan_cases([case.id])["planned"] == 1
    [step] = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id)).all()
    # due two hours after the failure by the policy: that is long past on the moved clock, so it goes now
    assert step.scheduled_for >= ahead - timedelta(minutes=1)


def test_payment_retries_fall_due_on_the_business_clock(demo_clock, db):
    from app.payments.charges import run_due_payment_retries

    due_at = datetime.now(UTC) + timedelta(days=3)
    retry = make_message(channel="payment_retry", address=None, template=None, scheduled_for=due_at)
    rid = retry.id
    db.session.commit()
    run_due_payment_retries()
    assert db.session.get(OutboxMessage, rid).state == "scheduled"
    clock.advance_to(due_at + timedelta(minutes=1), actor="demo")
    run_due_payment_retries()
    db.session.expire_all()
    assert db.session.get(OutboxMessage, rid).state != "scheduled"  # taken up (this case has no gateway to charge)
