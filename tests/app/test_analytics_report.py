"""Issue 17, done-when 1 (the numbers, not the page yet): a world with planted truths, counted by the rollups and
read back by app.analytics.report: WhatsApp wins back twice what email does, evening sends beat morning sends,
recovery by the week cases opened, still-open cases kept in the denominator, money never added across currencies,
filters narrowing what they name."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from app.analytics import report, rollups
from app.analytics.report import Filters
from app.extensions import db
from app.models import Payment
from tests.builders import make_case, make_customer, make_gateway_account, make_message, make_transaction

MONDAY = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday


def world(seed: int = 5, cases: int = 600) -> dict[str, int]:
    """Each case gets one message; whether it pays is drawn with the planted odds: for Spanish-speaking customers
    WhatsApp 40 %, email 20 %; for English-speaking ones both 25 %; sent in the customer's evening (19:00) 1.5 times
    the odds of the morning (09:00). Expired cards are mostly paid with a new card, other declines mostly by a retry
    of the card on file. One payment in ten comes after the attribution window (72 h): organic. Some cases stay
    open, some are paid elsewhere; a third are in EUR."""
    rng = random.Random(seed)
    truth = {"paid": 0, "open": 0, "elsewhere": 0, "eur": 0, "won72": 0, "late": 0, "late_minor": 0}
    account = make_gateway_account().id
    for i in range(cases):
        spanish = i % 4 < 2
        customer = make_customer(timezone="Europe/Madrid", phone_e164=f"+3461{i:07d}",
                                 locale="es_ES" if spanish else "en-GB")
        currency = "EUR" if i % 3 == 0 else "USD"
        truth["eur"] += currency == "EUR"
        opened = MONDAY + timedelta(days=rng.randrange(28), hours=rng.randrange(24))
        expired = rng.random() < 0.4
        transaction = make_transaction(customer=customer, currency=currency, amount_minor=5000, value_band="mid",
                                       gateway_account_id=account,
                                       decline_reason="expired_card" if expired else "insufficient_funds")
        case = make_case(transaction=transaction, opened_at=opened, state="contacting")
        channel = "whatsapp" if i % 2 else "email"
        evening = rng.random() < 0.5
        local_day = (opened + timedelta(days=1)).astimezone(customer_zone()).replace(
            hour=19 if evening else 9, minute=0, second=0, microsecond=0)
        message = make_message(case=case, channel=channel, state="sent", sent_at=local_day.astimezone(UTC))
        odds = ((0.4 if channel == "whatsapp" else 0.2) if spanish else 0.25) * (1.5 if evening else 1.0)
        roll = rng.random()
        if roll < odds:
            case.state, case.recovered_message_id, case.recovered_amount_minor = "recovered", message.id, 5000
            # most pay within a day or two of the message; one in ten after the best-times window (72 h)
            late = rng.random() < 0.1
            case.closed_at = message.sent_at + timedelta(hours=rng.randrange(80, 120) if late else rng.randrange(1, 48))
            truth["paid"] += 1
            truth["won72"] += not late
            truth["late"] += late
            truth["late_minor"] += 5000 if late else 0
            usual = "new_card" if expired else "retry"
            method = usual if rng.random() < 0.8 else rng.choice(("vault", "ach"))
            db.session.add(Payment(case_id=case.id, order_id=f"pay-{i}", method=method, initiator="customer",
                                   amount_minor=5000, currency=currency, state="approved",
                                   completed_at=case.closed_at))
        elif roll < odds + 0.05:
            case.state, case.recovered_via, case.recovered_amount_minor = "recovered", "elsewhere", 5000
            truth["elsewhere"] += 1
        elif roll < odds + 0.25:
            truth["open"] += 1
        else:
            case.state = "expired"
    db.session.commit()
    return truth


def customer_zone():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Madrid")


@pytest.fixture
def planted(app, db):  # type: ignore[no-untyped-def]
    truth = world()
    rollups.rebuild()
    return truth


def test_the_tiles_count_cases_once_and_keep_currencies_apart(planted):
    tiles = {k.currency: k for k in report.kpis(Filters())}
    assert set(tiles) == {"USD", "EUR"}
    assert tiles["EUR"].failed_n == planted["eur"] and tiles["USD"].failed_n == 600 - planted["eur"]
    assert sum(k.recovered_n for k in tiles.values()) == planted["paid"]
    assert sum(k.elsewhere_n for k in tiles.values()) == planted["elsewhere"]  # shown apart, in no rate
    assert sum(k.open_n for k in tiles.values()) == planted["open"]  # still open: in the denominator
    usd = tiles["USD"]
    assert usd.rate_count == (Decimal(usd.recovered_n) / Decimal(usd.failed_n)).quantize(Decimal("0.0001"))
    assert usd.failed_minor == usd.failed_n * 5000 and usd.rate_amount == usd.rate_count


def _won_back(filters: Filters) -> dict[str, Decimal]:
    """Recoveries credited per message sent, by channel, all currencies together (counts, not money)."""
    sent: dict[str, int] = {}
    paid: dict[str, int] = {}
    for r in report.funnel(filters):
        sent[r.value] = sent.get(r.value, 0) + r.sent_n
        paid[r.value] = paid.get(r.value, 0) + r.paid_n
    return {channel: Decimal(paid[channel]) / sent[channel] for channel in sent}


def test_whatsapp_wins_back_twice_what_email_does_for_spanish_speaking_customers(planted):
    spanish = _won_back(Filters(where={"language": "es"}))
    assert 1.5 < spanish["whatsapp"] / spanish["email"] < 2.7, spanish
    english = _won_back(Filters(where={"language": "en"}))
    assert 0.65 < english["whatsapp"] / english["email"] < 1.5, english  # no such effect for English speakers
    by_language = {r.value for r in report.breakdown("language", Filters())}
    assert by_language == {"es", "en"}
    assert all(r.sent_n and r.delivered_n == 0 for r in report.funnel(Filters()))  # no status came back here


def test_expired_cards_recover_mostly_through_card_updates(planted):
    def methods(reason: str) -> dict[str, int]:
        counted: dict[str, int] = {}
        for r in report.breakdown("paid_with", Filters(where={"decline_reason": reason})):
            if r.value is not None:
                counted[r.value] = counted.get(r.value, 0) + r.recovered_n
        return counted

    expired, short_of_funds = methods("expired_card"), methods("insufficient_funds")
    assert max(expired, key=expired.__getitem__) == "new_card"
    assert expired["new_card"] > 0.6 * sum(expired.values())
    assert max(short_of_funds, key=short_of_funds.__getitem__) == "retry"
    assert short_of_funds.get("new_card", 0) < 0.2 * sum(short_of_funds.values())


def test_a_payment_after_the_attribution_window_is_organic(planted):
    tiles = report.kpis(Filters())
    assert sum(k.organic_n for k in tiles) == planted["late"] > 0
    assert sum(k.organic_minor for k in tiles) == planted["late_minor"]
    credited = sum(r.paid_n for r in report.funnel(Filters()))
    assert credited == planted["paid"] - planted["late"]  # each in-window recovery credited to one last touch
    assert sum(r.any_n for r in report.funnel(Filters())) == credited  # one message per case: any = last


def test_evening_sends_beat_morning_sends_in_the_customer_s_own_hours(planted):
    by_hour = {r.value: r for r in report.breakdown("local_hour", Filters(where={"currency": "USD"}))}
    assert set(by_hour) == {9, 19}  # Madrid time, whatever UTC hour they went at
    assert by_hour[19].paid_rate / by_hour[9].paid_rate > 1.2  # type: ignore[operator]


def test_recovery_by_the_week_cases_opened(planted):
    weeks = report.cohorts(Filters())
    assert sorted({c.week for c in weeks}) == [date(2026, 9, 7) + timedelta(weeks=w) for w in range(4)]
    assert all(c.week.weekday() == 0 for c in weeks)
    assert sum(c.failed_n for c in weeks) == 600
    assert sum(c.open_n for c in weeks) == planted["open"]
    assert all(c.lost_n >= 0 for c in weeks)


def test_filters_narrow_what_they_name(planted):
    eur = report.kpis(Filters(where={"currency": "EUR"}))
    assert [k.currency for k in eur] == ["EUR"]
    first_week = report.kpis(Filters(start=date(2026, 9, 7), end=date(2026, 9, 13)))
    assert sum(k.failed_n for k in first_week) == sum(c.failed_n for c in report.cohorts(Filters())
                                                       if c.week == date(2026, 9, 7))
    only_whatsapp = report.breakdown("template", Filters(where={"channel": "whatsapp"}))
    assert sum(r.sent_n for r in only_whatsapp) == 300
    with pytest.raises(ValueError, match="unknown dimension 'colour'"):
        report.breakdown("colour", Filters())


def test_an_empty_world_reads_as_nothing_not_an_error(app, db):
    assert report.kpis(Filters()) == [] and report.cohorts(Filters()) == [] and report.funnel(Filters()) == []


def test_best_times_count_first_touches_won_within_72_hours_with_intervals(planted, monkeypatch):
    cells = report.best_times(Filters())
    assert {c.hour for c in cells} == {9, 19} and {c.weekday for c in cells} <= set(range(7))
    assert sum(c.first_n for c in cells) == 600  # one first touch per case
    assert sum(c.won_n for c in cells) == planted["won72"]  # paid after 72 h: not a win for its hour
    evening = [c for c in cells if c.hour == 19]
    morning = [c for c in cells if c.hour == 9]
    rate = lambda cs: sum(c.won_n for c in cs) / sum(c.first_n for c in cs)  # noqa: E731
    assert rate(evening) > 1.2 * rate(morning)
    for c in cells:
        assert c.low is not None and c.high is not None and c.low <= float(c.rate) <= c.high
    # a cell with fewer first touches than the minimum is greyed out and never ranked
    assert all(c.thin for c in cells if c.first_n < report.MIN_SAMPLE)
    monkeypatch.setattr(report, "MIN_SAMPLE", 20)
    ranked = report.ranked(cells)
    assert ranked and all(c.first_n >= 20 for c in ranked)
    assert [c.low for c in ranked] == sorted((c.low for c in ranked), reverse=True)
    assert ranked[0].hour == 19  # the convincingly best cell is an evening one


def test_time_to_recover_reads_as_a_median_and_a_p90(planted):
    tiles = report.kpis(Filters())
    histogram = [sum(k.time_to_recover[i] for k in tiles) for i in range(8)]
    assert sum(histogram) == planted["paid"]  # every recovery through Recoup, in one bucket
    usd = next(k for k in tiles if k.currency == "USD")
    # the world pays a day after opening plus 1-48 h, one in ten after 3-5 more days
    assert usd.median_hours == 72 and usd.p90_hours in (72, 168)
    assert report._within((0,) * 8, report.Decimal("0.5")) is None


def test_the_daily_cubes_and_the_hourly_rollups_answer_alike(planted, monkeypatch):
    """Every question, asked of the daily cubes and again of the hourly rollups, gets the same answer: one
    dimension (one-dimension cubes), a filter with another dimension (pair cubes), local hours, weekdays and the
    best-times slots (the hour grid), two filters with a breakdown (hourly), dates, currencies, channels, a value
    that is missing (None)."""
    questions = [Filters(), Filters(start=date(2026, 9, 10), end=date(2026, 9, 20)),
                 Filters(where={"currency": "EUR"}), Filters(where={"channel": "email"}),
                 Filters(where={"language": "es"}), Filters(where={"decline_code": None}),
                 Filters(start=date(2026, 9, 14), where={"language": "en", "currency": "USD", "channel": "whatsapp"}),
                 Filters(where={"language": "es", "decline_reason": "expired_card"}),
                 Filters(start=date(2026, 9, 9), end=date(2026, 9, 30), where={"decline_reason": "expired_card"}),
                 Filters(where={"vip": False, "channel": "whatsapp", "currency": "USD"}),
                 Filters(where={"value_band": "mid", "first_time": None, "language": "en"}),
                 Filters(where={"policy_version_id": None, "local_hour": 19}),
                 # the period's whole weeks read from the weekly cubes: no whole week; an open start; a Sunday end
                 Filters(start=date(2026, 9, 15), end=date(2026, 9, 18)),
                 Filters(end=date(2026, 9, 23), where={"channel": "whatsapp"}),
                 Filters(start=date(2026, 9, 8), end=date(2026, 9, 27), where={"language": "es"})]
    asks = [report.kpis, report.cohorts, report.funnel, report.best_times, report.holdout_lift,
            *(lambda f, d=d: report.breakdown(d, f) for d in ("decline_reason", "language", "paid_with",
                                                              "local_hour", "template", "weekday", "vip", "holdout",
                                                              "decline_code", "variant"))]
    for filters in questions:
        for ask in asks:
            monkeypatch.setattr(report, "USE_CUBES", True)
            from_cubes = ask(filters)
            monkeypatch.setattr(report, "USE_CUBES", False)
            from_hours = ask(filters)
            assert from_cubes == from_hours, (filters, ask)
    assert report.kpis(Filters()), "the world is empty: the comparison proves nothing"


def test_a_period_reads_its_whole_weeks_by_week_and_its_edges_by_day():
    """Monday to Sunday weeks inside the period come from the weekly cubes (a part's dates are its first and last
    weeks' Mondays); the days before the first Monday and after the last Sunday from the daily ones."""
    spans = report.spans
    wednesday, tuesday = date(2026, 9, 9), date(2026, 10, 6)
    assert spans(Filters(start=wednesday, end=tuesday, where={"currency": "EUR"})) == [
        (False, Filters(start=wednesday, end=date(2026, 9, 13), where={"currency": "EUR"})),
        (True, Filters(start=date(2026, 9, 14), end=date(2026, 9, 28), where={"currency": "EUR"})),
        (False, Filters(start=date(2026, 10, 5), end=tuesday, where={"currency": "EUR"}))]
    # exactly whole weeks: nothing by day
    assert spans(Filters(start=date(2026, 9, 14), end=date(2026, 9, 27))) == [
        (True, Filters(start=date(2026, 9, 14), end=date(2026, 9, 21)))]
    # no whole week inside: all by day, as asked
    assert spans(Filters(start=wednesday, end=date(2026, 9, 15))) == [
        (False, Filters(start=wednesday, end=date(2026, 9, 15)))]
    assert spans(Filters(start=date(2026, 9, 14), end=date(2026, 9, 19))) == [
        (False, Filters(start=date(2026, 9, 14), end=date(2026, 9, 19)))]
    # open ends: every week there is on that side
    assert spans(Filters()) == [(True, Filters())]
    assert spans(Filters(end=wednesday)) == [(True, Filters(end=date(2026, 8, 31))),
                                             (False, Filters(start=date(2026, 9, 7), end=wednesday))]
    assert spans(Filters(start=wednesday)) == [(False, Filters(start=wednesday, end=date(2026, 9, 13))),
                                               (True, Filters(start=date(2026, 9, 14)))]


def test_each_dashboard_question_with_one_filter_reads_a_cube(app, db):
    """Every breakdown the page offers, the best times and the holdout, with any one of the page's filters (besides
    the period, the currency and the channel), is answered by a daily cube, never by the hourly rollups; two filters
    with a breakdown may be."""
    from admin.dashboard import BREAKDOWNS, FILTERS
    from app.models.analytics import FILTER_DIMENSIONS

    assert set(FILTERS) - {"currency", "channel"} == set(FILTER_DIMENSIONS)
    cases, messages = report._CASES, report._MESSAGES
    for name in FILTER_DIMENSIONS:
        f = Filters(start=date(2026, 9, 1), where={name: "x", "currency": "EUR", "channel": "sms"})
        asked = [(cases, ("currency",)), (cases, (report.DAY, "currency")), (messages, ("channel", "currency")),
                 (messages, (report.SLOT,)), (cases, ("holdout", "currency"))]
        asked += [(cases if d in report.CASE_DIMENSIONS else messages, (d, "currency")) for d in BREAKDOWNS]
        for hourly, groups in asked:
            where, _ = report.source(hourly, groups, f)
            assert where != "hours", (name, groups)
    two = Filters(where={"value_band": "high", "first_time": "first"})
    assert report.source(cases, ("currency",), two)[0] == "pairs"
    assert report.source(cases, ("decline_reason", "currency"), two)[0] == "hours"
