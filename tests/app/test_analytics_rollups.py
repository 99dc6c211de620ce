"""Issue 17, done-when 2: on random worlds the rollups equal a recomputation from the raw rows written here, from
the definitions, independently of app.analytics (on SQLite and MariaDB): after incremental refreshes, after
duplicated and late events, after state changes, after the merchant changes the attribution window, and after a
rebuild (whole, and from a day on). The daily cubes equal the hourly rollups summed by day and one dimension, by
day and a pair of dimensions, and (the hour grid) by day, local weekday and hour, and one filter dimension."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.analytics import rollups
from app.extensions import db
from app.models import (
    CaseDay,
    CaseRollup,
    CaseWeek,
    ConsentEvent,
    Customer,
    MessageDay,
    MessageEvent,
    MessageRollup,
    MessageWeek,
    OutboxMessage,
    Payment,
    RecoveryCase,
    Transaction,
)
from app.models.analytics import (
    CASE_CUBE_DIMENSIONS,
    CASE_DIMENSIONS,
    CASE_MEASURES,
    CASE_PAIRS,
    FILTER_DIMENSIONS,
    HOURS,
    MESSAGE_CUBE_DIMENSIONS,
    MESSAGE_DIMENSIONS,
    MESSAGE_MEASURES,
    MESSAGE_PAIRS,
    CasePair,
    MessageHours,
    MessageHourWeeks,
    MessagePair,
    hour_column,
)
from app.models.types import utcnow
from tests.builders import make_case, make_customer, make_message, make_transaction

START = datetime(2026, 10, 1, tzinfo=UTC)
ZONES = ("America/New_York", "Europe/Madrid", "Asia/Tokyo", None)


def hour(moment: datetime) -> datetime:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def grow(rng: random.Random, cases: int) -> None:
    """Customers, failed payments, cases and the messages sent for them, with what came back."""
    for _ in range(cases):
        customer = make_customer(timezone=rng.choice(ZONES), vip=rng.random() < 0.1,
                                 phone_e164=f"+1305555{rng.randrange(10**4):04d}",
                                 locale=rng.choice(("es-MX", "es_ES", "en-US", "pt-BR", None)))
        transaction = make_transaction(customer=customer, amount_minor=rng.choice((1999, 4900, 12500, 250000)),
                                       currency=rng.choice(("USD", "EUR")),
                                       decline_reason=rng.choice(("insufficient_funds", "expired_card", None)),
                                       decline_code=rng.choice(("202", "223", "201")),
                                       value_band=rng.choice(("low", "mid", "high")),
                                       is_first_payment=rng.choice((True, False, None)),
                                       product_type=rng.choice(("subscription", "one_time")))
        case = make_case(transaction=transaction, opened_at=START + timedelta(minutes=rng.randrange(60 * 24 * 20)),
                         holdout=rng.random() < 0.1, state=rng.choice(("open", "contacting")))
        for step in range(rng.randrange(4)):
            sent = case.opened_at + timedelta(hours=rng.randrange(1, 96)) if rng.random() < 0.8 else None
            message = make_message(case=case, channel=rng.choice(("email", "sms", "whatsapp")), step_n=step + 1,
                                   template=rng.choice(("payment_failed", "reminder_short")),
                                   variant=rng.choice((None, "A", "B")), state="sent" if sent else "scheduled",
                                   sent_at=sent)
            if sent:
                for kind in rng.sample(("delivered", "read", "opened", "clicked", "unsubscribed", "failed"),
                                       rng.randrange(4)):
                    db.session.add(MessageEvent(message_id=message.id, kind=kind,
                                                occurred_at=sent + timedelta(minutes=rng.randrange(600))))
        if rng.random() < 0.15:
            db.session.add(ConsentEvent(customer_id=customer.id, channel=rng.choice(("email", "sms")),
                                        action=rng.choice(("opt_out", "opt_in")), source="sms_stop",
                                        at=case.opened_at + timedelta(hours=rng.randrange(200))))
    db.session.commit()


def stir(rng: random.Random) -> None:
    """What happens later: duplicated and late events, recoveries credited to a message or made elsewhere,
    expiries, a customer made VIP."""
    messages = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.sent_at.is_not(None))).all()
    for message in rng.sample(messages, min(len(messages), 25)):
        kind = rng.choice(("delivered", "read", "clicked", "opened"))
        for _ in range(rng.choice((1, 2))):  # a webhook delivered twice is two rows
            db.session.add(MessageEvent(message_id=message.id, kind=kind,
                                        occurred_at=message.sent_at - timedelta(days=3)))  # late: an old time
    open_cases = db.session.scalars(sa.select(RecoveryCase).where(RecoveryCase.state.in_(("open", "contacting"))))
    for case in open_cases.all():
        roll = rng.random()
        if roll < 0.3:
            sent = [m.id for m in messages if m.case_id == case.id]
            case.state = "recovered"
            case.closed_at = case.opened_at + timedelta(hours=rng.randrange(1, 150))
            case.recovered_amount_minor = case.amount_due_minor - rng.choice((0, 0, 100))
            if sent and rng.random() < 0.8:
                case.recovered_message_id = rng.choice(sent)
            else:
                case.recovered_via = "elsewhere" if rng.random() < 0.5 else None
            if case.recovered_via is None:  # paid through Recoup: by a new card, the stored one, a retry...
                for n in range(rng.choice((1, 1, 2))):  # sometimes a declined try first, then the one that paid
                    db.session.add(Payment(
                        case_id=case.id, order_id=f"o-{case.id}-{n}", method=rng.choice(("new_card", "vault",
                                                                                          "retry", "ach")),
                        initiator="customer", amount_minor=case.recovered_amount_minor, currency=case.currency,
                        state="approved" if n or rng.random() < 0.5 else "declined",
                        completed_at=case.closed_at - timedelta(minutes=10 - n)))
        elif roll < 0.4:
            case.state = "expired"
    for customer in rng.sample(db.session.scalars(sa.select(Customer)).all(), 3):
        customer.vip = not customer.vip
    db.session.commit()


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def credit(case: RecoveryCase, window: timedelta) -> tuple[int | None, set[int]]:
    """(the last touch sent within ``window`` before the payment, the last touch of each channel in it) of a case
    recovered through Recoup; the credited message (its link or retry took the payment) counts as sent by then."""
    paid_at = aware(case.closed_at)
    inside = []
    for m in db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.case_id == case.id,
                                                                OutboxMessage.sent_at.is_not(None))):
        at = min(aware(m.sent_at), paid_at) if m.id == case.recovered_message_id else aware(m.sent_at)
        if paid_at - window <= at <= paid_at:
            inside.append((at, m.id, m.channel))
    inside.sort()
    last_of_channel = {channel: mid for _, mid, channel in inside}
    return (inside[-1][1] if inside else None), set(last_of_channel.values())


def language(customer: Customer) -> str | None:
    """The language part of the locale: es-MX and es_ES are both Spanish."""
    return customer.locale.replace("_", "-").split("-")[0].lower() if customer.locale else None


def through_recoup(case: RecoveryCase) -> bool:
    return case.state == "recovered" and case.recovered_via != "elsewhere" and case.closed_at is not None


def expected(window: timedelta = timedelta(hours=72)) -> tuple[Counter, Counter]:
    """The rollups from the definitions, summed here case by case and message by message."""
    db.session.expire_all()
    cases: dict[tuple, Counter] = defaultdict(Counter)
    for case in db.session.scalars(sa.select(RecoveryCase)):
        tx = db.session.get(Transaction, case.transaction_id)
        customer = db.session.get(Customer, case.customer_id)
        first = None if tx.is_first_payment is None else ("first" if tx.is_first_payment else "repeat")
        paid = case.state == "recovered"
        approved = db.session.scalars(sa.select(Payment.method).where(Payment.case_id == case.id,
                                                                      Payment.state == "approved")
                                      .order_by(Payment.completed_at, Payment.id)).all()
        paid_with = None if not paid else "elsewhere" if case.recovered_via == "elsewhere" else \
            (approved[-1] if approved else None)
        dims = (tx.gateway, case.currency, tx.decline_reason, tx.decline_code, tx.value_band, first,
                tx.product_type, bool(customer.vip), language(customer), case.policy_version_id, bool(case.holdout),
                paid_with)
        amount = case.recovered_amount_minor if paid else 0
        row = cases[(hour(case.opened_at), dims)]
        row["failed_n"] += 1
        row["failed_minor"] += case.amount_due_minor
        if paid and case.recovered_via == "elsewhere":
            row["elsewhere_n"] += 1
            row["elsewhere_minor"] += amount
        elif paid:
            row["recovered_n"] += 1
            row["recovered_minor"] += amount
            if through_recoup(case) and credit(case, window)[0] is None:  # no touch in the window: organic
                row["organic_n"] += 1
                row["organic_minor"] += amount
            if case.closed_at is not None:  # how long it took, in the histogram's buckets
                opened = case.opened_at if case.opened_at.tzinfo else case.opened_at.replace(tzinfo=UTC)
                closed = case.closed_at if case.closed_at.tzinfo else case.closed_at.replace(tzinfo=UTC)
                hours = (closed - opened).total_seconds() / 3600
                edges = [(1, "ttr_1h"), (6, "ttr_6h"), (24, "ttr_24h"), (72, "ttr_3d"), (168, "ttr_7d"),
                         (336, "ttr_14d"), (720, "ttr_30d")]
                row[next((name for edge, name in edges if hours <= edge), "ttr_more")] += 1
        row["open_n"] += case.state in ("open", "contacting", "escalated")
    messages: dict[tuple, Counter] = defaultdict(Counter)
    sent_messages = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.sent_at.is_not(None))).all()
    first_of: dict[int, OutboxMessage] = {}
    for m in sent_messages:
        best = first_of.get(m.case_id)
        if best is None or (aware(m.sent_at), m.id) < (aware(best.sent_at), best.id):
            first_of[m.case_id] = m
    for m in sent_messages:
        case = db.session.get(RecoveryCase, m.case_id)
        tx = db.session.get(Transaction, case.transaction_id)
        customer = db.session.get(Customer, m.customer_id)
        sent = m.sent_at if m.sent_at.tzinfo else m.sent_at.replace(tzinfo=UTC)
        local = sent.astimezone(ZoneInfo(customer.timezone or "UTC"))
        kinds = set(db.session.scalars(sa.select(MessageEvent.kind).where(MessageEvent.message_id == m.id)))
        outs = [e.at if e.at.tzinfo else e.at.replace(tzinfo=UTC) for e in db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.customer_id == customer.id, ConsentEvent.channel == m.channel,
                                          ConsentEvent.action == "opt_out"))]
        first = None if tx.is_first_payment is None else ("first" if tx.is_first_payment else "repeat")
        dims = (m.channel, m.template, m.variant, m.policy_version_id, local.hour, local.weekday(), tx.gateway,
                case.currency, tx.decline_reason, tx.value_band, first, tx.product_type, bool(customer.vip),
                language(customer))
        last, any_touch = credit(case, window) if through_recoup(case) else (None, set())
        row = messages[(hour(sent), dims)]
        row["sent_n"] += 1
        row["delivered_n"] += bool(kinds & {"delivered", "read"})
        row["read_n"] += bool(kinds & {"read", "opened"})
        row["clicked_n"] += "clicked" in kinds
        row["optout_n"] += "unsubscribed" in kinds or any(sent <= at <= sent + timedelta(hours=72) for at in outs)
        row["paid_n"] += last == m.id
        row["paid_minor"] += case.recovered_amount_minor if last == m.id else 0
        row["any_n"] += m.id in any_touch
        row["any_minor"] += case.recovered_amount_minor if m.id in any_touch else 0
        first_touch = first_of[m.case_id].id == m.id
        row["first_n"] += first_touch
        row["won72_n"] += (first_touch and case.state == "recovered" and case.recovered_via != "elsewhere"
                           and case.closed_at is not None and aware(case.closed_at) <= sent + timedelta(hours=72))
    return _flatten(cases, CASE_MEASURES), _flatten(messages, MESSAGE_MEASURES)


def _flatten(groups: dict[tuple, Counter], measures: tuple[str, ...]) -> Counter:
    out: Counter = Counter()
    for (bucket, dims), counts in groups.items():
        for m in measures:
            if counts[m]:
                out[(bucket, dims, m)] += counts[m]
    return out


def stored() -> tuple[Counter, Counter]:
    db.session.rollback()
    found = []
    for model, dimensions, measures in ((CaseRollup, CASE_DIMENSIONS, CASE_MEASURES),
                                        (MessageRollup, MESSAGE_DIMENSIONS, MESSAGE_MEASURES)):
        out: Counter = Counter()
        for row in db.session.scalars(sa.select(model)):
            dims = tuple(getattr(row, d) for d in dimensions)
            for m in measures:
                if getattr(row, m):
                    out[(hour(row.bucket), dims, m)] += getattr(row, m)
        found.append(out)
    return found[0], found[1]


def cubes_match_the_rollups(when: str) -> None:
    """Each daily cube row is the hourly rollup rows of its day, currency (channel) and dimension value summed."""
    for rollup, day_model, cube_dims, measures in (
            (CaseRollup, CaseDay, CASE_CUBE_DIMENSIONS, CASE_MEASURES),
            (MessageRollup, MessageDay, MESSAGE_CUBE_DIMENSIONS, MESSAGE_MEASURES)):
        want: Counter = Counter()
        for row in db.session.scalars(sa.select(rollup)):
            head = (hour(row.bucket).date(), row.currency or "", *((row.channel or "",) if rollup is MessageRollup
                                                                    else ()))
            for dim in ("*", *cube_dims):
                value = None if dim == "*" else getattr(row, dim)
                for m in measures:
                    if getattr(row, m):
                        want[(*head, dim, json.dumps(value), m)] += getattr(row, m)
        got: Counter = Counter()
        for row in db.session.scalars(sa.select(day_model)):
            head = (row.day, row.currency, *((row.channel,) if day_model is MessageDay else ()))
            for m in measures:
                if getattr(row, m):
                    got[(*head, row.dim, json.dumps(json.loads(row.value)), m)] += getattr(row, m)
        assert got == want, f"{day_model.__tablename__} differs from the hourly rollup {when}: " \
                            f"{(got - want) or (want - got)}"
        assert want
    pairs_match_the_rollups(when)
    the_hour_grid_matches_the_rollups(when)
    weeks_match_the_days(when)


def weeks_match_the_days(when: str) -> None:
    """Each weekly cube row is the daily cube's rows of its week (Monday to Sunday), currency (channel), dimension
    value (and local weekday) summed, measure by measure (every hour's column of the grid)."""
    head = ("dim", "value", "day", "currency")
    for day_model, week_model, keys in ((CaseDay, CaseWeek, head), (MessageDay, MessageWeek, (*head, "channel")),
                                        (MessageHours, MessageHourWeeks, (*head, "channel", "weekday"))):
        table = day_model.__table__
        measures = [c.name for c in table.columns if c.name not in keys and c.name != "id"]
        want: Counter = Counter()
        for row in db.session.execute(sa.select(table)).mappings():
            week_key = tuple(row["day"] - timedelta(days=row["day"].weekday()) if k == "day" else row[k] for k in keys)
            for m in measures:
                if row[m]:
                    want[(*week_key, m)] += row[m]
        got: Counter = Counter()
        for row in db.session.execute(sa.select(week_model.__table__)).mappings():
            assert row["day"].weekday() == 0, f"{week_model.__tablename__}: a week that starts on {row['day']}"
            for m in measures:
                if row[m]:
                    got[(*(row[k] for k in keys), m)] += row[m]
        assert got == want, f"{week_model.__tablename__} differs from {table.name} {when}: " \
                            f"{(got - want) or (want - got)}"
        assert want


def pairs_match_the_rollups(when: str) -> None:
    """Each pair cube row is the hourly rollup rows of its day, currency (channel) and two dimensions' values
    summed."""
    for rollup, pair_model, pairs, measures in ((CaseRollup, CasePair, CASE_PAIRS, CASE_MEASURES),
                                                (MessageRollup, MessagePair, MESSAGE_PAIRS, MESSAGE_MEASURES)):
        want: Counter = Counter()
        for row in db.session.scalars(sa.select(rollup)):
            head = (hour(row.bucket).date(), row.currency or "", *((row.channel or "",) if rollup is MessageRollup
                                                                    else ()))
            for first, other in pairs:
                for m in measures:
                    if getattr(row, m):
                        want[(*head, f"{first}|{other}", json.dumps(getattr(row, first)),
                              json.dumps(getattr(row, other)), m)] += getattr(row, m)
        got: Counter = Counter()
        for row in db.session.scalars(sa.select(pair_model)):
            head = (row.day, row.currency, *((row.channel,) if pair_model is MessagePair else ()))
            for m in measures:
                if getattr(row, m):
                    got[(*head, row.pair, json.dumps(json.loads(row.first)), json.dumps(json.loads(row.other)),
                         m)] += getattr(row, m)
        assert got == want, f"{pair_model.__tablename__} differs from the hourly rollup {when}: " \
                            f"{(got - want) or (want - got)}"
        assert want


def the_hour_grid_matches_the_rollups(when: str) -> None:
    """Each hour grid cell (a row's column of one measure and local hour) is the hourly rollup rows of its day,
    currency, channel, local weekday and hour (and one filter dimension's value) summed."""
    want: Counter = Counter()
    for row in db.session.scalars(sa.select(MessageRollup)):
        head = (hour(row.bucket).date(), row.currency or "", row.channel or "", row.weekday)
        for dim in ("*", *FILTER_DIMENSIONS):
            value = None if dim == "*" else getattr(row, dim)
            for m in MESSAGE_MEASURES:
                if getattr(row, m):
                    want[(*head, dim, json.dumps(value), row.local_hour, m)] += getattr(row, m)
    got: Counter = Counter()
    for row in db.session.scalars(sa.select(MessageHours)):
        head = (row.day, row.currency, row.channel, row.weekday)
        for h in HOURS:
            for m in MESSAGE_MEASURES:
                if getattr(row, hour_column(m, h)):
                    got[(*head, row.dim, json.dumps(json.loads(row.value)), h, m)] += getattr(row, hour_column(m, h))
    assert got == want, f"the hour grid differs from the hourly rollup {when}: {(got - want) or (want - got)}"
    assert want


def assert_equal(when: str, window: timedelta = timedelta(hours=72)) -> None:
    want_cases, want_messages = expected(window)
    got_cases, got_messages = stored()
    cubes_match_the_rollups(when)
    assert got_cases == want_cases, (f"case rollups differ {when}: "
                                     f"{(got_cases - want_cases) or (want_cases - got_cases)}")
    assert got_messages == want_messages, (f"message rollups differ {when}: "
                                           f"{(got_messages - want_messages) or (want_messages - got_messages)}")
    assert want_cases and want_messages  # the world is not empty


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_the_raw_rows_through_refreshes_late_events_and_rebuilds(app, db, seed):
    rng = random.Random(seed)
    grow(rng, 40)
    rollups.refresh_changed()
    assert_equal("after the first refresh")
    rollups.refresh_changed()  # nothing changed: nothing moves
    assert_equal("after a refresh with nothing new")
    stir(rng)
    grow(rng, 15)
    rollups.refresh_changed()
    assert_equal("after late and duplicated events, recoveries and more cases")
    # a customer texts STOP a few hours after a message already counted: the opt-out is held against it
    # (the runs are told it is later: by then the message and its customer are older than a refresh looks back)
    recent = make_message(channel="sms", state="sent", sent_at=utcnow() - timedelta(hours=5))
    db.session.commit()
    rollups.refresh_changed(now=utcnow() + timedelta(minutes=10))
    db.session.add(ConsentEvent(customer_id=recent.customer_id, channel="sms", action="opt_out", source="sms_stop",
                                at=utcnow() + timedelta(minutes=20)))
    db.session.commit()
    rollups.refresh_changed(now=utcnow() + timedelta(minutes=30))
    assert_equal("after an opt-out following a counted message")
    before = stored()
    rollups.rebuild()
    assert stored() == before, "a rebuild changed totals the refreshes had kept"
    cubes_match_the_rollups("after a rebuild")
    rollups.rebuild(START + timedelta(days=10, hours=7))
    assert stored() == before, "a rebuild from an hour on changed totals"
    cubes_match_the_rollups("after a rebuild from an hour on")
    # the merchant narrows the attribution window: the next run credits every recovery again
    from app.settings import save_settings

    save_settings({"attribution_window_hours": 12}, actor="test")
    rollups.refresh_changed()
    assert_equal("after the attribution window changed to 12 hours", timedelta(hours=12))
    assert stored() != before, "a narrower window credited nothing differently: the world tests nothing"


def test_refresh_and_rebuild_do_not_run_at_once(app, db):
    from app.locks import Busy, exclusive

    with exclusive(rollups.LOCK), pytest.raises(Busy):
        rollups.refresh_changed()


def test_the_cli_rebuilds_and_says_what_it_counted(app, db):
    grow(random.Random(7), 5)
    done = app.test_cli_runner().invoke(args=["analytics", "rebuild"])
    assert done.exit_code == 0, done.output
    assert "analytics rebuilt (all): 5 case(s)" in done.output
    bad = app.test_cli_runner().invoke(args=["analytics", "rebuild", "--since", "last tuesday"])
    assert bad.exit_code != 0 and "--since" in bad.output and "is not a date" in bad.output
    since = app.test_cli_runner().invoke(args=["analytics", "rebuild", "--since", "2026-10-05"])
    assert since.exit_code == 0 and "from 2026-10-05 00:00 UTC" in since.output
    # the weekly cubes count whole weeks: from a Wednesday, the rebuild starts on its Monday and says so
    wednesday = app.test_cli_runner().invoke(args=["analytics", "rebuild", "--since", "2026-10-07T15:00"])
    assert wednesday.exit_code == 0, wednesday.output
    assert "from 2026-10-05 00:00 UTC, the Monday of 2026-10-07's week" in wednesday.output
    assert_equal("after the CLI's rebuilds")


def test_a_rebuild_starts_on_the_monday_that_begins_its_week_in_utc():
    from datetime import timezone

    from app.analytics.cubes import first_day, week_of

    monday = datetime(2026, 10, 5, tzinfo=UTC)
    assert first_day(datetime(2026, 10, 7, 15, 30, tzinfo=UTC)) == monday
    assert first_day(datetime(2026, 10, 5, tzinfo=UTC)) == monday  # a Monday is its own week's start
    assert first_day(datetime(2026, 10, 11, 23, 59)) == monday  # Sunday night, no zone: UTC
    # Monday 01:00 in Madrid is still Sunday in UTC: the week before
    assert first_day(datetime(2026, 10, 12, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == monday
    assert week_of(datetime(2026, 10, 11).date()) == monday.date()
