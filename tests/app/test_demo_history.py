"""The demo's history (app.demo.history): a seeded past whose dashboard tells the planted stories, made by the real
planner (no message in a customer's quiet hours, none to a channel after its opt-out), the same every time for a
seed, and no break in the audit chain; its policy's experiment running since the history began, with results to
read (issue 18)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FAILURES = 3000  # enough WhatsApp messages to Spanish speakers for the story to show (over 100)


def open_store(app):  # type: ignore[no-untyped-def]
    """The demo's store as its world makes it: the gateway account, the teams, the standard policy."""
    from app.demo.world import seed_store

    seed_store(app, SimpleNamespace(url="http://127.0.0.1:9", security_key="sandbox-key"))


@pytest.fixture
def history(app, db):  # type: ignore[no-untyped-def]
    from app.analytics.rollups import rebuild
    from app.demo.history import seed_history

    open_store(app)
    report = seed_history(FAILURES, now=NOW)
    rebuild()
    return report


def summed(rows, key=lambda r: r.value):  # type: ignore[no-untyped-def]
    """Breakdown rows added up over currencies, by ``key``."""
    totals: dict = defaultdict(Counter)
    for row in rows:
        totals[key(row)].update({name: value for name, value in vars(row).items() if isinstance(value, int)
                                 and not isinstance(value, bool)})
    return totals


def rate(counts: Counter, part: str, whole: str) -> float:
    return counts[part] / counts[whole] if counts[whole] else 0.0


def test_a_seeded_past_tells_its_stories_and_keeps_recoups_rules(history, app, db):  # type: ignore[no-untyped-def]
    """One history (seeding takes a while): the dashboard's stories; no message in the customer's quiet hours
    (every candidate zone, the policy's hours for their region), none on a channel after its opt-out; rows shaped
    as the dispatcher writes them; the audit chain intact."""
    from app.audit import verify_chain

    dashboard_tells_the_planted_stories(history, db)
    no_message_in_quiet_hours_or_after_an_opt_out(db)
    history_messages_look_like_what_the_dispatcher_writes(history, db)
    the_experiment_ran_through_the_history(db)
    check = verify_chain(app.config)
    assert check.ok, check


def dashboard_tells_the_planted_stories(history, db) -> None:  # type: ignore[no-untyped-def]
    from app.analytics.report import Filters, breakdown, funnel, kpis
    from app.models.analytics import CASE_DIMENSIONS, MESSAGE_DIMENSIONS

    everything = Filters()
    tiles = {k.currency: k for k in kpis(everything)}
    assert sum(k.failed_n for k in tiles.values()) == FAILURES
    assert set(tiles) == {"USD", "EUR", "GBP"} and tiles["USD"].failed_n > tiles["EUR"].failed_n > tiles["GBP"].failed_n
    recovered = sum(k.recovered_n for k in tiles.values())
    assert 0.25 * FAILURES < recovered < 0.45 * FAILURES  # a believable dunning result
    assert sum(k.open_n for k in tiles.values()) > 0  # the last days' cases are still open
    assert history.still_open == sum(k.open_n for k in tiles.values())

    # 1. Spanish speakers answer WhatsApp about twice as well as email (by their language where the dashboard has
    # it; the Spanish storefront's currency either way)
    by_language = {"language": "es"} if "language" in MESSAGE_DIMENSIONS else None
    for where, lift in ((by_language, 1.6), ({"currency": "EUR"}, 1.3)):  # EUR: some Germans and Dutch too
        if where is None:
            continue
        spanish = summed(funnel(Filters(where=where)))
        assert spanish["whatsapp"]["sent_n"] >= 50, where
        assert rate(spanish["whatsapp"], "paid_n", "sent_n") > lift * rate(spanish["email"], "paid_n", "sent_n"), where

    # 2. late afternoon and evening beat the morning, in the customer's own hours
    hours = summed(breakdown("local_hour", everything))
    morning, evening = Counter(), Counter()
    for hour, counts in hours.items():
        if 8 <= hour < 12:
            morning.update(counts)
        elif 16 <= hour < 21:
            evening.update(counts)
    assert evening["sent_n"] >= 100
    assert rate(evening, "paid_n", "sent_n") > 1.4 * rate(morning, "paid_n", "sent_n")

    # 3. expired cards come back through a new card; insufficient funds mostly through the card on file
    if "paid_with" in CASE_DIMENSIONS:  # the dashboard's "how it was paid" (issue 17)
        expired = summed(breakdown("paid_with", Filters(where={"decline_reason": "expired_card"})))
        paid = {k: v["failed_n"] for k, v in expired.items() if k not in (None, "elsewhere")}
        assert paid["new_card"] > 0.8 * sum(paid.values())
    methods = payment_methods(db)
    assert methods["expired_card"]["new_card"] > 0.8 * sum(methods["expired_card"].values())
    assert methods["insufficient_funds"]["vault"] > 0.5 * sum(methods["insufficient_funds"].values())
    assert methods["insufficient_funds"]["retry"] > 0  # the policy's retry of high-value soft declines

    # 4. soft declines recover better than hard ones
    reasons = summed(breakdown("decline_reason", everything))
    assert rate(reasons["insufficient_funds"], "recovered_n", "failed_n") > \
        rate(reasons["lost_stolen_fraud"], "recovered_n", "failed_n") + 0.1

    # 5. some customers opt out (STOP, unsubscribe), and it shows on the funnel
    channels = summed(funnel(everything))
    assert channels["sms"]["optout_n"] > 0 and channels["email"]["optout_n"] > 0

    # 6. the holdout is never recovered through Recoup; an operator records some payments made elsewhere
    holdout = summed(breakdown("holdout", everything))
    assert holdout[True]["failed_n"] > 0 and holdout[True]["recovered_n"] == 0
    assert holdout[False]["recovered_n"] == recovered


def payment_methods(db) -> dict[str, Counter]:  # type: ignore[no-untyped-def]
    from app.models import Payment, RecoveryCase, Transaction

    rows = db.session.execute(
        sa.select(Transaction.decline_reason, Payment.method)
        .join(RecoveryCase, RecoveryCase.transaction_id == Transaction.id)
        .join(Payment, Payment.case_id == RecoveryCase.id).where(Payment.state == "approved"))
    methods: dict[str, Counter] = defaultdict(Counter)
    for reason, method in rows:
        methods[reason][method] += 1
    return methods


def _quiet(local: time, ranges) -> bool:  # type: ignore[no-untyped-def]
    for r in ranges:
        inside = (r.start <= local < r.end) if r.start < r.end else (local >= r.start or local < r.end)
        if inside:
            return True
    return False


def no_message_in_quiet_hours_or_after_an_opt_out(db) -> None:  # type: ignore[no-untyped-def]
    from app.models import ConsentEvent, Customer, OutboxMessage
    from app.payments.receipts import not_a_receipt
    from app.recovery.planning import contact_windows, customer_zones
    from app.recovery.policies import active_version, compiled
    from rules.contact_rules import Override, contact_rules_for
    from rules.vocabulary import CHANNELS

    timing, windows = compiled(active_version()).timing, contact_windows()
    sent = db.session.execute(
        sa.select(OutboxMessage, Customer).join(Customer, Customer.id == OutboxMessage.customer_id)
        .where(OutboxMessage.sent_at.is_not(None), OutboxMessage.channel.in_(CHANNELS), not_a_receipt())).all()
    assert len(sent) > 2 * FAILURES
    checked = 0
    for message, customer in sent:
        rules = contact_rules_for(timing, windows, Override.from_dict(message.contact_override),
                                  country=customer.country, region=customer.region)
        quiet = rules.quiet_hours_for(customer.country, customer.region)
        assert quiet, customer.country
        for zone in customer_zones(customer):
            local = message.sent_at.astimezone(ZoneInfo(zone))
            assert not _quiet(local.time(), quiet), (message.id, zone, local.isoformat(), quiet)
            checked += 1
    assert checked >= len(sent)

    opted = db.session.execute(sa.select(ConsentEvent.customer_id, ConsentEvent.channel, ConsentEvent.at)
                               .where(ConsentEvent.action == "opt_out")).all()
    assert opted
    for customer_id, channel, at in opted:
        after = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.customer_id == customer_id, OutboxMessage.channel == channel, not_a_receipt(),
            OutboxMessage.sent_at > at))
        assert after == 0, (customer_id, channel, at)


def history_messages_look_like_what_the_dispatcher_writes(history, db) -> None:  # type: ignore[no-untyped-def]
    from app.demo.history_sim import HISTORY_WORKER
    from app.models import MessageEvent, OutboxMessage, RecoveryCase
    from rules.vocabulary import Channel

    kinds: dict[str, Counter] = defaultdict(Counter)
    for channel, kind in db.session.execute(
            sa.select(OutboxMessage.channel, MessageEvent.kind)
            .join(MessageEvent, MessageEvent.message_id == OutboxMessage.id)):
        kinds[channel][kind] += 1
    assert {"attempt", "sent", "opened", "clicked", "link_opened"} <= set(kinds[Channel.EMAIL])
    assert {"attempt", "sent", "delivered", "clicked"} <= set(kinds[Channel.SMS])
    assert {"attempt", "sent", "delivered", "read", "failed"} <= set(kinds[Channel.WHATSAPP])
    ids = dict(db.session.execute(sa.select(OutboxMessage.channel, OutboxMessage.provider_message_id)
                                  .where(OutboxMessage.claimed_by == HISTORY_WORKER,
                                         OutboxMessage.provider_message_id.is_not(None))).all())
    assert ids[Channel.SMS].startswith("SM") and len(ids[Channel.SMS]) == 34
    assert ids[Channel.WHATSAPP].startswith("wamid.")
    assert ids[Channel.EMAIL].startswith("<recoup.m") and ids[Channel.EMAIL].endswith(">")
    # every recovery through Recoup names the message whose link or retry took the payment
    credited = db.session.execute(
        sa.select(RecoveryCase.id, OutboxMessage.case_id).join(
            OutboxMessage, OutboxMessage.id == RecoveryCase.recovered_message_id)).all()
    assert credited and all(case == owner for case, owner in credited)
    assert history.recovered == len(credited)


def the_experiment_ran_through_the_history(db) -> None:  # type: ignore[no-untyped-def]
    """The demo's experiment runs since the history began; every case the planner put in an arm is recorded, sticky
    per customer, exposed at its first message sent; the read shows WhatsApp first recovering more (story 7) with
    the split as planned and the opt-out guardrail holding, and the periodic check stops nothing."""
    from app.demo.history import DAYS
    from app.demo.policy import CONTROL, EXPERIMENT_NAME, VARIANT
    from app.models import ArmAssignment, Experiment, OutboxMessage, RecoveryCase
    from app.models.types import as_utc
    from app.recovery import experiments
    from app.recovery.policies import active_version
    from experiments.readout import Metric
    from experiments.srm import SrmLevel
    from rules.vocabulary import CHANNELS

    [row] = db.session.scalars(sa.select(Experiment)).all()
    assert row.name == EXPERIMENT_NAME and row.control == CONTROL
    assert experiments.is_live(row) and row.status == experiments.ExperimentStatus.RUNNING and not row.stopped_arms
    assert row.started_version_id == active_version().id

    cases = db.session.execute(sa.select(RecoveryCase.id, RecoveryCase.customer_id, RecoveryCase.holdout,
                                         RecoveryCase.opened_at, RecoveryCase.plan)).all()
    assignments = {a.case_id: a for a in db.session.scalars(sa.select(ArmAssignment))}
    first_sent = dict(db.session.execute(
        sa.select(OutboxMessage.case_id, sa.func.min(OutboxMessage.sent_at))
        .where(OutboxMessage.sent_at.is_not(None), OutboxMessage.channel.in_(CHANNELS))
        .group_by(OutboxMessage.case_id)).all())
    arms_of: dict[int, set[str]] = defaultdict(set)
    exposed: Counter = Counter()
    for case_id, customer_id, holdout, opened_at, plan in cases:
        assignment = assignments.get(case_id)
        if holdout:
            assert assignment is None, case_id
            continue
        assert assignment is not None and assignment.arm == plan["experiment"]["arm"], case_id
        assert assignment.customer_id == customer_id and assignment.unit == f"customer:{customer_id}"
        assert as_utc(assignment.assigned_at) == as_utc(opened_at)  # planned then, in the history's time
        sent = first_sent.get(case_id)
        assert (as_utc(assignment.exposed_at) if assignment.exposed_at else None) == (as_utc(sent) if sent else None)
        arms_of[customer_id].add(assignment.arm)
        exposed[assignment.arm] += assignment.exposed_at is not None
    assert len(assignments) == sum(1 for c in cases if not c.holdout)
    # it ran since the history's first case was planned, not since the demo activated its version a moment ago
    assert as_utc(row.started_at) == min(as_utc(a.assigned_at) for a in assignments.values())
    assert as_utc(row.started_at) < NOW - timedelta(days=DAYS - 1)
    assert all(len(arms) == 1 for arms in arms_of.values())  # sticky: all of a customer's cases in one arm
    assert any(len([c for c in cases if c.customer_id == customer]) > 1 for customer in arms_of)
    assert exposed[CONTROL] >= 500 and exposed[VARIANT] >= 500, exposed

    found = experiments.read(row)
    assert {arm.name: arm.data.units for arm in found.arms} == dict(exposed)
    readout = found.readout
    assert readout is not None, found.why_no_readout
    recovery = readout.comparison(Metric.RECOVERY_RATE, VARIANT)
    assert 0 < recovery.difference.effect < 0.1  # a few points better (story 7)
    assert recovery.interval.lower < recovery.difference.effect < recovery.interval.upper
    assert readout.sample_ratio.level is not SrmLevel.ALERT
    [opt_out] = readout.guardrails
    assert opt_out.metric == "opt_out" and not opt_out.stop
    assert not readout.stop_reasons
    assert experiments.check_running()["stopped"] == []
    assert not db.session.get(Experiment, row.id).stopped_arms


def test_the_demo_policy_is_the_standard_one_with_an_experiment():
    """Pure: the standard policy's file is left alone; the demo's text compiles, its control plans every case as the
    standard policy does, its variant starts repeat customers on WhatsApp, and customers fall in both arms."""
    import dsl
    from app.demo.policy import CONTROL, EXPERIMENT_NAME, STANDARD_POLICY, VARIANT, demo_policy_text
    from rules.planner import plan
    from rules.vocabulary import Channel

    standard_text = STANDARD_POLICY.read_text(encoding="utf-8")
    assert "experiment" not in standard_text
    standard = dsl.compile_policy(standard_text, fx_rates=None, filename="standard")
    demo = dsl.compile_policy(demo_policy_text(), fx_rates=None, filename="standard")
    assert demo.experiment is not None and demo.experiment.name == EXPERIMENT_NAME
    assert [arm.name for arm in demo.experiment.arms] == [CONTROL, VARIANT]
    assert demo.experiment.guardrails == (("opt_out", demo.experiment.guardrails[0][1]),)

    def steps(made):  # type: ignore[no-untyped-def]
        return [(s.channel, s.fallbacks, s.template, s.send_at) for s in made.steps]

    arms: Counter = Counter()
    for n in range(400):
        facts = {"now": "2026-12-07T12:00:00Z",
                 "customer": {"id": f"c-{n}", "successful_payments": n % 3, "country": "US", "region": "NY",
                              "timezone": "America/New_York", "email": "a@example.com", "phone": "+12125550100"},
                 "transaction": {"id": f"t-{n}", "amount": "40.00", "currency": "USD", "decline_code": "202",
                                 "gateway": "nmi", "failed_at": "2026-12-07T11:59:00Z"}}
        as_standard, as_demo = plan(standard, facts), plan(demo, facts)
        assert as_demo.segment == as_standard.segment and as_demo.holdout == as_standard.holdout
        if as_demo.holdout:
            assert as_demo.experiment is None
            continue
        arm = as_demo.experiment.arm
        arms[(arm, as_demo.segment)] += 1
        if arm == CONTROL or as_demo.segment != "repeat":
            assert steps(as_demo) == steps(as_standard), n
        else:
            assert as_demo.steps[0].channel is Channel.WHATSAPP and as_demo.steps[0].fallbacks == (Channel.EMAIL,)
            assert as_standard.steps[0].channel is Channel.EMAIL
    assert arms[(CONTROL, "repeat")] > 50 and arms[(VARIANT, "repeat")] > 50


def test_the_same_seed_plays_the_same_history():
    """Pure: people, plans and outcomes are drawn from the seed alone."""
    import dsl
    from app.demo.history_people import failures
    from app.demo.history_rows import tables
    from app.demo.history_sim import Setup, Timeline
    from app.demo.history_story import Story
    from app.demo.policy import demo_policy_text
    from app.settings import DEFAULTS
    from rules.contact_settings import parse_contact_windows

    policy = dsl.compile_policy(demo_policy_text(), fx_rates=None, filename="standard")

    def play(seed: int) -> tuple:  # type: ignore[type-arg]
        ids = dict.fromkeys(("customers", "transactions", "recovery_cases", "outbox_messages", "payment_links",
                             "payments"), 1)
        windows = parse_contact_windows(DEFAULTS["contact_windows"])
        setup = Setup(policy=policy, version_number=1, version_id=1, windows=windows, now=NOW, account_id=1,
                      ids=ids, experiment_id=1)
        timeline = Timeline(setup, Story(seed), seed)
        timeline.run(failures(600, end=NOW - timedelta(minutes=1), days=90, seed=seed))
        made = tables(timeline)
        return (Counter(c["state"] for c in made.recovery_cases),
                Counter((m["channel"], m["state"]) for m in made.outbox_messages),
                Counter(e["kind"] for e in made.message_events), len(made.payments), len(made.opt_outs),
                [(c["segment"], c["plan"]["steps"]) for c in made.recovery_cases[:50]],
                [(a["case_id"], a["arm"], a["exposed_at"]) for a in made.experiment_assignments])

    first = play(7)
    assert play(7) == first
    assert play(8) != first
    assert sum(first[0].values()) == 600


def test_nothing_is_seeded_twice_or_over_existing_cases(app, db):  # type: ignore[no-untyped-def]
    from app.demo.history import MARK, seed_if_new
    from app.models import RecoveryCase, Setting

    open_store(app)
    assert seed_if_new(0) is None
    first = seed_if_new(120)
    assert first is not None and first.failures == 120 and db.session.get(Setting, MARK) is not None
    assert seed_if_new(120) is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 120
