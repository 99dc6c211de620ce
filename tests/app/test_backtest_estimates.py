"""Issue 17, point 5: money in the policy backtest. Each version's recoveries are estimated from the measured
recovery of similar cases (segment × first touch × decline reason, backing off when thin), with 95 % intervals that
hold the truth, per currency, and the result says when history is too thin to tell or the versions cannot be told
apart. Planted histories: rates known in advance, counted by the analytics facts and read back."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from app.analytics import rollups
from app.extensions import db as _db
from app.models.types import utcnow
from app.recovery import backtest
from app.recovery.backtest_estimates import (
    NO_TOUCH,
    RETRIES_ONLY,
    History,
    Level,
    PlannedCase,
    Verdict,
    compare_versions,
    first_touch,
    measured_history,
)
from app.recovery.policies import activate_text
from rules.plan import Plan, PlannedStep
from rules.vocabulary import Channel, StepAction
from tests.builders import make_case, make_customer, make_gateway_account, make_message, make_transaction

REASON = "insufficient_funds"

ACTIVE = """policy "standard"
  segment regular otherwise
  plan for regular
    step after 2h via email template "payment_failed"
    give up after 14d
  end
end
"""
#: the draft: the same cases, WhatsApp first (measured better than email below)
DRAFT = ACTIVE.replace("via email", "via whatsapp")


def history_of(cells: list[tuple[str | None, str, str | None, int, int]], paid_share: Decimal | None = None) -> History:
    """A history with ``(segment, touch, reason, n, won)`` measured cases per cell."""
    history = History(since=datetime(2026, 1, 1))
    for segment, touch, reason, n, won in cells:
        for i in range(n):
            history.add(segment, touch, reason, won=i < won, paid_share=paid_share)
    return history


def planned(n: int, touch: str, *, segment: str | None = "regular", reason: str | None = REASON,
            amount: int = 10000, currency: str = "USD", first_id: int = 1) -> list[PlannedCase]:
    return [PlannedCase(first_id + i, segment, touch, reason, amount, currency) for i in range(n)]


# -- the cells and their back-off ------------------------------------------------------------------------------


def test_a_thin_cell_backs_off_to_coarser_cells_and_says_which():
    history = history_of([
        ("regular", "email", REASON, 50, 10),  # a full cell
        ("regular", "email", "expired_card", 10, 1),  # thin: its segment × touch has 60
        ("vip", "email", REASON, 5, 2),  # thin, and so is vip × email: email alone (65) is used
        ("vip", "sms", REASON, 4, 1),  # sms: 4 cases in all, used all the same (thin)
    ])
    full = history.basis("regular", "email", REASON)
    assert (full.level, full.n, full.won, full.thin) == (Level.CELL, 50, 10, False)
    backed = history.basis("regular", "email", "expired_card")
    assert (backed.level, backed.n, backed.won, backed.thin) == (Level.SEGMENT, 60, 11, False)
    touch = history.basis("vip", "email", REASON)
    assert (touch.level, touch.n, touch.won, touch.thin) == (Level.TOUCH, 65, 13, False)
    thin = history.basis("vip", "sms", REASON)
    assert (thin.level, thin.n, thin.thin) == (Level.TOUCH, 4, True)
    never = history.basis("regular", "whatsapp", REASON)  # no WhatsApp measured: every case, and thin
    assert (never.level, never.n, never.thin) == (Level.ALL, 69, True)
    assert History().basis("regular", "email", REASON) is None
    low, high = full.wilson()
    assert low < Decimal("0.2") < high and high - low < Decimal("0.25")


def test_the_measured_cases_behind_an_estimate_are_counted_once():
    history = history_of([("a", "email", REASON, 40, 4), ("a", "email", "other", 40, 4), ("b", "email", REASON, 5, 0),
                          ("b", "sms", REASON, 40, 4)])
    cells = [history.basis("a", "email", REASON).key, history.basis("a", "email", "other").key]
    assert history.distinct_n(cells) == 80
    # b × email is thin: it backs off to email alone, which holds a's cells too
    assert history.distinct_n([*cells, history.basis("b", "email", REASON).key]) == 85
    assert history.distinct_n([history.basis("b", "sms", REASON).key, *cells]) == 120


def _plan(*steps: PlannedStep, holdout: bool = False) -> Plan:
    return Plan(transaction="t-1", policy="p", version=1, segment="regular", priority=None, decline_reason=REASON,
                zones=("UTC",), steps=steps, offers=(), escalation=None, give_up_after=None, holdout=holdout)


def _step(n: int, action: StepAction, channel: Channel | None) -> PlannedStep:
    return PlannedStep(n=n, action=action, channel=channel, fallbacks=(), template=None, variant=None, send_at=None,
                       deferred_by=(), rule=1)


def test_the_first_touch_of_a_plan_is_what_its_first_outbox_row_would_say():
    sms, retry = _step(1, StepAction.MESSAGE, Channel.SMS), _step(1, StepAction.RETRY_PAYMENT, None)
    assert first_touch(_plan(sms, _step(2, StepAction.MESSAGE, Channel.EMAIL))) == "sms"
    assert first_touch(_plan(retry, sms)) == "payment_retry"
    assert first_touch(_plan(_step(1, StepAction.MESSAGE, None), sms)) == "sms"  # a step with no channel writes none
    assert first_touch(_plan()) == NO_TOUCH
    # held out: nothing at all, or only the card retries (``holdout 5% with retries``), never the retry that opens
    # a plan whose messages follow
    assert first_touch(_plan(holdout=True)) == NO_TOUCH
    assert first_touch(_plan(retry, holdout=True)) == RETRIES_ONLY


# -- the estimates ---------------------------------------------------------------------------------------------


def test_the_measured_rate_comes_back_with_an_interval_that_holds_it():
    history = history_of([("regular", "email", REASON, 300, 90)])  # 30 %
    est = compare_versions(history, ("draft", planned(200, "email")), None)
    tested = est.tested
    assert tested.expected == Decimal("60.0") and tested.rate == Decimal("0.3000")
    assert tested.low < 60 < tested.high and tested.high - tested.low < 50  # an interval, not everything
    assert tested.rate_low < Decimal("0.3") < tested.rate_high
    [usd] = tested.amounts
    assert (usd.currency, usd.due_minor, usd.expected_minor) == ("USD", 2_000_000, 600_000)
    assert usd.low_minor < 600_000 < usd.high_minor
    assert tested.levels == {Level.CELL: 200} and tested.basis_n == 300 and not tested.too_thin
    [(cell, used)] = tested.cells
    assert (cell.segment, cell.touch, cell.reason, cell.n, cell.won, used) == ("regular", "email", REASON, 300, 90, 200)
    low, high = cell.wilson()  # the cell's own measured rate, with statsmodels' Wilson interval
    assert low < Decimal("0.3") < high and high - low < Decimal("0.11")
    assert est.verdict is Verdict.ALONE and not est.too_thin


def test_the_intervals_hold_what_really_happens_about_95_times_in_100():
    """Coverage: a history and a backtest drawn from the same true rate; the interval of the recovered count
    should hold the count that really happened in about 95 % of worlds (too narrow an interval, one that forgets
    the rate's own uncertainty or the cases' luck, falls well short)."""
    rng = random.Random(11)
    held, worlds = 0, 200
    for world in range(worlds):
        truth = rng.choice((0.1, 0.25, 0.4))
        won = sum(rng.random() < truth for _ in range(60))
        history = history_of([("regular", "email", REASON, 60, won)])
        happened = sum(rng.random() < truth for _ in range(100))
        tested = compare_versions(history, ("draft", planned(100, "email")), None, draws=2000, seed=world).tested
        held += tested.low <= happened <= tested.high
    assert 0.90 * worlds <= held <= 0.995 * worlds, held


def test_a_better_first_channel_gets_a_higher_estimate_and_a_difference_that_can_be_told():
    history = history_of([("regular", "email", REASON, 200, 40), ("regular", "whatsapp", REASON, 200, 90)])
    est = compare_versions(history, ("draft", planned(100, "whatsapp")), ("v1", planned(100, "email")))
    assert est.tested.expected == Decimal("45.0") and est.active.expected == Decimal("20.0")
    low, high = est.difference
    assert 0 < low < 25 < high, est.difference
    assert est.verdict is Verdict.BETTER and "more" in est.summary
    reverse = compare_versions(history, ("draft", planned(100, "email")), ("v1", planned(100, "whatsapp")))
    assert reverse.verdict is Verdict.WORSE and reverse.difference[1] < 0


def test_versions_that_differ_too_little_for_the_history_cannot_be_told_apart():
    history = history_of([("regular", "email", REASON, 40, 10), ("regular", "sms", REASON, 40, 11)])
    est = compare_versions(history, ("draft", planned(60, "sms")), ("v1", planned(60, "email")))
    assert est.tested.expected > est.active.expected  # a point estimate says "better"...
    assert est.verdict is Verdict.UNDECIDED  # ...the interval of the difference holds zero
    low, high = est.difference
    assert low < 0 < high
    same = compare_versions(history, ("draft", planned(60, "sms")), ("v1", planned(60, "sms")))
    assert same.verdict is Verdict.SAME and same.difference == (0, 0)


def test_held_out_cases_get_the_organic_rate():
    history = history_of([("regular", "email", REASON, 100, 30), ("regular", NO_TOUCH, REASON, 40, 2)])
    est = compare_versions(history, ("draft", planned(50, NO_TOUCH)), ("v1", planned(50, "email")))
    assert est.tested.expected == Decimal("2.5") and est.active.expected == Decimal("15.0")
    assert est.verdict is Verdict.WORSE


def test_currencies_are_kept_apart():
    history = history_of([("regular", "email", REASON, 100, 40)])
    cases = (planned(30, "email", amount=2500, currency="USD")
             + planned(20, "email", amount=300000, currency="JPY", first_id=100))
    est = compare_versions(history, ("draft", cases), None)
    usd, jpy = est.tested.amount("USD"), est.tested.amount("JPY")
    assert (usd.cases, usd.due_minor, usd.expected_minor) == (30, 75_000, 30_000)
    assert (jpy.cases, jpy.due_minor, jpy.expected_minor) == (20, 6_000_000, 2_400_000)
    assert usd.high_minor <= 75_000 and jpy.low_minor > 0 and jpy.high_minor <= 6_000_000
    assert est.currencies == ["JPY", "USD"] and len(est.tested.amounts) == 2
    assert all(isinstance(v, int) for a in est.tested.amounts
               for v in (a.expected_minor, a.low_minor, a.high_minor, a.due_minor))


def test_part_payments_lower_the_money_not_the_count():
    history = history_of([("regular", "email", REASON, 100, 50)], paid_share=Decimal("0.6"))
    est = compare_versions(history, ("draft", planned(10, "email", amount=1000)), None)
    assert est.tested.expected == Decimal("5.0") and est.tested.amount("USD").expected_minor == 3000


def test_no_history_is_too_thin_to_tell():
    est = compare_versions(History(), ("draft", planned(20, "email")), ("v1", planned(20, "sms")))
    assert est.no_history and est.too_thin and est.verdict is Verdict.NO_HISTORY
    assert est.tested is None and "too thin" in est.summary.lower()


def test_history_thin_for_most_cases_is_too_thin_to_tell():
    history = history_of([("regular", "email", REASON, 500, 100), ("regular", "sms", REASON, 12, 3)])
    mostly_sms = planned(30, "sms") + planned(20, "email", first_id=100)
    est = compare_versions(history, ("draft", mostly_sms), ("v1", planned(50, "email")))
    assert est.tested.thin_cases == 30 and est.tested.too_thin and not est.active.too_thin
    assert est.too_thin and est.verdict is Verdict.THIN and "draft" in est.summary
    fewer_sms = planned(20, "sms") + planned(30, "email", first_id=100)  # 40 % thin: an estimate all the same
    assert compare_versions(history, ("draft", fewer_sms), None).verdict is Verdict.ALONE


def test_the_same_input_gives_the_same_numbers():
    history = history_of([("regular", "email", REASON, 80, 20)])
    first = compare_versions(history, ("draft", planned(40, "email")), None)
    again = compare_versions(history, ("draft", planned(40, "email")), None)
    assert first == again


# -- from the database -----------------------------------------------------------------------------------------


def plant_history(now: datetime, cells: list[tuple[str | None, str, str, int, int]], *, seed: int = 3,
                  currency: str = "USD", amount: int = 5000) -> None:
    """``(segment, first touch, decline reason, n, won)``: n cases opened 40 to 150 days before ``now``, each planned
    with that first touch (an outbox row of step 1; NO_TOUCH: held out; RETRIES_ONLY: held out with a card retry),
    ``won`` of them recovered through Recoup.
    Of the others, some are still open, some expired, some paid elsewhere (recovered in neither rate)."""
    rng = random.Random(seed)
    account = make_gateway_account().id
    for segment, touch, reason, n, won in cells:
        for i in range(n):
            opened = now - timedelta(days=rng.randrange(40, 150), hours=rng.randrange(24))
            tx = make_transaction(customer=make_customer(), gateway_account_id=account, decline_reason=reason,
                                  currency=currency, amount_minor=amount, failed_at=opened)
            held = touch in (NO_TOUCH, RETRIES_ONLY)
            case = make_case(transaction=tx, opened_at=opened, segment=segment, holdout=held, state="contacting")
            message = None
            if touch != NO_TOUCH:
                message = make_message(case=case, channel="payment_retry" if touch == RETRIES_ONLY else touch, step_n=1,
                                       state="sent", scheduled_for=opened + timedelta(hours=2),
                                       sent_at=opened + timedelta(hours=2))
            if not held:
                make_message(case=case, channel="email", step_n=2, state="scheduled",
                             scheduled_for=opened + timedelta(days=2))
            if i < won:
                case.state, case.recovered_amount_minor = "recovered", amount
                case.recovered_message_id = message.id if message else None
                case.closed_at = opened + timedelta(hours=5)
            elif i % 3 == 0:
                case.state, case.recovered_via, case.recovered_amount_minor = "recovered", "elsewhere", amount
                case.closed_at = opened + timedelta(days=1)
            elif i % 3 == 1:
                case.state, case.closed_at = "expired", opened + timedelta(days=14)
    _db.session.commit()


def recent_cases(now: datetime, n: int, *, currency: str = "USD", amount: int = 5000) -> None:
    """Cases of the last days, for the backtest to plan again (never planned: not history)."""
    account = make_gateway_account().id
    for i in range(n):
        failed = now - timedelta(days=1 + i % 20, hours=3)
        tx = make_transaction(customer=make_customer(phone_e164=f"+1305555{i:04d}"), gateway_account_id=account,
                              currency=currency, amount_minor=amount, failed_at=failed)
        make_case(transaction=tx, opened_at=failed)
    _db.session.commit()


PLANTED = [("regular", "email", REASON, 120, 24), ("regular", "whatsapp", REASON, 120, 54),
           ("regular", NO_TOUCH, REASON, 40, 0)]


@pytest.fixture
def planted(app, db):  # type: ignore[no-untyped-def]
    now = utcnow()
    plant_history(now, PLANTED)
    return now


def rates(history: History) -> dict[str, tuple[int, int]]:
    return {touch: (history.tallies[("touch", touch)].n, history.tallies[("touch", touch)].won)
            for touch in ("email", "whatsapp", NO_TOUCH)}


def test_the_history_is_read_from_the_facts_and_from_the_raw_rows_alike(planted):
    # an unplanned case (no version, no outbox row) says nothing about a plan
    make_case(transaction=make_transaction(failed_at=planted - timedelta(days=50)),
              opened_at=planted - timedelta(days=50))
    _db.session.commit()
    raw = measured_history(now=planted)  # no facts yet: computed from the raw rows
    assert rates(raw) == {"email": (120, 24), "whatsapp": (120, 54), NO_TOUCH: (40, 0)}
    assert raw.n == 280
    rollups.rebuild()
    from_facts = measured_history(now=planted)
    assert rates(from_facts) == rates(raw)
    assert from_facts.basis("regular", "whatsapp", REASON).rate == Decimal("0.45")
    # the window: the planted cases opened 40 to 150 days ago, all after this "now"
    assert measured_history(now=planted - timedelta(days=151)).n == 0


def test_held_out_cases_that_kept_their_retries_are_a_cell_of_their_own(app, db):  # type: ignore[no-untyped-def]
    """``holdout 5% with retries``: the held-out cases that were retried are measured apart from those that got
    nothing and from those whose first retry was followed by messages, and a held-out plan that keeps its retries
    is estimated from them."""
    now = utcnow()
    plant_history(now, [("regular", "payment_retry", REASON, 60, 30), ("regular", RETRIES_ONLY, REASON, 60, 12),
                        ("regular", NO_TOUCH, REASON, 60, 0)])
    history = measured_history(now=now)
    cells = {touch: (history.tallies[("touch", touch)].n, history.tallies[("touch", touch)].won)
             for touch in ("payment_retry", RETRIES_ONLY, NO_TOUCH)}
    assert cells == {"payment_retry": (60, 30), RETRIES_ONLY: (60, 12), NO_TOUCH: (60, 0)}
    est = compare_versions(history, ("draft", planned(50, RETRIES_ONLY)), ("v1", planned(50, NO_TOUCH)))
    assert est.tested.rate == Decimal("0.2000") and est.active.rate == Decimal("0")


def test_the_facts_are_preferred(planted):
    """What the analytics counted is what the estimate reads (a case's fact, not its raw row, once counted)."""
    from app.models import CaseFact, RecoveryCase

    rollups.rebuild()
    case = _db.session.scalars(RecoveryCase.__table__.select().where(RecoveryCase.state == "expired")
                               .with_only_columns(RecoveryCase.id).limit(1)).one()
    _db.session.execute(CaseFact.__table__.update().where(CaseFact.case_id == case)
                        .values(recovered_n=1, recovered_minor=5000))
    history = measured_history(now=planted)
    assert sum(t[1] for t in rates(history).values()) == 24 + 54 + 1


def test_the_backtest_estimates_money_for_each_version(planted):
    activate_text("standard", ACTIVE, actor=None, note="test set-up")
    recent_cases(planted, 30)
    recent_cases(planted, 10, currency="EUR", amount=8000)
    result = backtest.compare(DRAFT, name="standard", days=30, now=planted)
    est = result.estimates
    assert result.tested.cases == 40 and est.history_n == 280
    draft, running = est.tested, est.active
    assert draft.rate == Decimal("0.4500") and running.rate == Decimal("0.2000")
    assert draft.rate_low < Decimal("0.45") < draft.rate_high and running.rate_low < Decimal("0.2") < running.rate_high
    assert draft.levels == {Level.CELL: 40} and draft.basis_n == 120 and running.basis_n == 120
    assert est.verdict is Verdict.BETTER and est.difference[0] > 0
    assert draft.amount("USD").expected_minor == 30 * 5000 * 45 // 100  # 45 % of what the USD cases owe
    assert draft.amount("EUR").expected_minor == 10 * 8000 * 45 // 100
    assert running.amount("EUR").expected_minor == 10 * 8000 * 20 // 100
    assert draft.amount("EUR").high_minor <= 80_000  # never more than the EUR cases owe: no USD in it


def test_a_backtest_with_no_history_says_it_is_too_thin(app, db):  # type: ignore[no-untyped-def]
    now = utcnow()
    activate_text("standard", ACTIVE, actor=None, note="test set-up")
    recent_cases(now, 5)
    est = backtest.compare(DRAFT, name="standard", days=30, now=now).estimates
    assert est.no_history and est.verdict is Verdict.NO_HISTORY and est.tested is None
