"""The chaos month: a time-warped month of traffic through the whole system, while its parts fail.

Failed payments appear in the NMI simulator every step (most also pushed by signed webhooks, some of those
delivered twice, as NMI re-delivers), a real RQ worker process fetches, plans and sends them through the channel
simulators, customers text STOP, and the business clock moves on by ``step_hours`` once the system has caught up.
On the way, at fixed steps: MariaDB is SIGKILLed and restarted, Redis too (losing everything it held, as the
machine's own Redis would), both together, the providers answer with 5xx storms and stall into timeouts, the
worker process is SIGKILLed (its supervisor starts it again), and the clock jumps days ahead at once.

MariaDB and Redis are the run's own (``tests/private_servers.py``), so nothing else on the machine is disturbed.

Afterwards the database and the simulators are the judges (:func:`judge`):

* every failure ingested once: one transaction and one case per failed NMI transaction;
* no duplicate: no message reached a provider twice;
* no loss: every message recorded as sent arrived once, none is left in flight or unknown, none is due unsent;
* no send in quiet hours: the business time each attempt was checked at is outside the policy's quiet hours in
  every time zone of its customer;
* no send to an opted-out channel after the opt-out was recorded;
* the audit chain verifies.

Used by ``tests/workers/test_chaos_month.py`` (the short form, in CI) and ``bench/chaos.py``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

#: the NMI simulator dates its records in real time while the business clock runs days ahead, so a failure that
#: comes late in the month is weeks old in business time at once: its steps are all due (the cadence cap spreads
#: them over days) and a give-up shorter than the month would close it before its first message
POLICY = """policy "chaos"
  segment everyone when transaction.amount >= 0 USD
  quiet hours 21:00-08:00
  cadence max 1 per day across all channels
  plan for everyone
    step after 0m via email template "payment_failed"
    step after 1d via sms, email template "reminder_short"
    step after 3d via whatsapp, sms template "final_notice"
    give up after 60d
  end
end
"""
QUIET_FROM, QUIET_UNTIL = clock_time(21, 0), clock_time(8, 0)

#: where the customers live (their phone, address and so time zone)
PLACES = [
    {"country": "US", "state": "NY", "postal_code": "10001", "phone": "+1212555", "zone": "America/New_York"},
    {"country": "US", "state": "CA", "postal_code": "94103", "phone": "+1415555", "zone": "America/Los_Angeles"},
    {"country": "GB", "state": None, "postal_code": "SW1A 1AA", "phone": "+44207946", "zone": "Europe/London"},
    {"country": "JP", "state": None, "postal_code": "100-0001", "phone": "+8131234", "zone": "Asia/Tokyo"},
    {"country": "AU", "state": "QLD", "postal_code": "4000", "phone": "+6173333", "zone": "Australia/Brisbane"},
]

IN_DOUBT = ("claimed", "sending", "delivering", "unknown")
SENT_STATES = ("sent", "delivered", "read")


@dataclass
class ChaosReport:
    days: int
    steps: int = 0
    steps_done: int = 0
    failures: list[str] = field(default_factory=list)  # NMI transaction ids of the failed payments
    webhooks: Counter[str] = field(default_factory=Counter)  # pushed, redelivered, refused (non-2xx), unreachable
    stops: int = 0
    chaos: list[str] = field(default_factory=list)  # what was done, when
    worker_starts: int = 0
    late_steps: int = 0  # steps whose catching up ran past its time (the judge still decides)
    late: list[str] = field(default_factory=list)  # what each late step was still waiting for
    waits: list[float] = field(default_factory=list)  # seconds each settling took
    messages: Counter[str] = field(default_factory=Counter)  # final states
    sent: Counter[str] = field(default_factory=Counter)  # per channel
    review: int = 0
    review_arrived: int = 0
    review_why: Counter[str] = field(default_factory=Counter)  # why rows went to review, by reason
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [
            f"{self.days} days in {self.steps} steps, {self.seconds:.0f} s: {len(self.failures)} failed payments, "
            f"webhooks {dict(self.webhooks)}, {self.stops} STOPs, worker started {self.worker_starts}x, "
            f"{self.late_steps} late step(s)",
            "chaos: " + "; ".join(self.chaos),
            f"messages by state {dict(self.messages)}; sent per channel {dict(self.sent)}; review {self.review} "
            f"({self.review_arrived} had arrived)",
        ]
        lines += [f"  review: {n} x {why}" for why, n in self.review_why.most_common(5)]
        lines += [f"  late: {why}" for why in self.late[:10]]
        if self.waits:
            slowest = sorted(range(len(self.waits)), key=lambda i: -self.waits[i])[:5]
            lines.append(f"  settling: {sum(self.waits):.0f} s in all, slowest "
                         + ", ".join(f"#{i} {self.waits[i]:.1f} s" for i in slowest))
        lines += [f"PROBLEM: {p}" for p in self.problems[:40]]
        if len(self.problems) > 40:
            lines.append(f"... and {len(self.problems) - 40} more")
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def chaos_plan(steps: int, without: tuple[str, ...] = ()) -> dict[int, str]:
    """What goes wrong at which step (spread over the month, the same every run), less the troubles ``without``
    names. A killed worker's RQ scheduler lock lives 61 s: until it expires no periodic job runs (the CI form
    leaves the kill out; the crash and soak tests kill workers many times)."""
    at = {
        0.12: "mariadb", 0.25: "redis", 0.35: "storm", 0.45: "timeouts", 0.55: "clock_jump",
        0.65: "worker_kill", 0.75: "mariadb+redis", 0.85: "storm+mariadb",
    }
    return {max(1, int(steps * share)): what for share, what in at.items() if what not in without}


def worker_env(app: Any, redis_url: str, public_url: str) -> dict[str, str]:
    from tests.crash import provider_env

    return {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "SECRET_KEY": app.config["SECRET_KEY"],
        "RECOUP_DEMO_CLOCK": "1",
        "RECOUP_PUBLIC_URL": public_url,
        **provider_env(app),
        "NMI_SECURITY_KEY": app.config["NMI_SECURITY_KEY"],
        "NMI_API_URL": app.config["NMI_API_URL"],
        "NMI_WEBHOOK_SIGNING_KEY": app.config["NMI_WEBHOOK_SIGNING_KEY"],
        # short clocks: a step's work is fetched, planned and sent within seconds
        "RECOUP_FETCH_INTERVAL": "2",
        "RECOUP_DISPATCH_INTERVAL": "1",
        "DISPATCH_LEASE_SECONDS": "3",
        "DISPATCH_BUDGET_SECONDS": "3",
        "WHATSAPP_RECONCILE_SECONDS": "3",
        "UNKNOWN_REVIEW_HOURS": "0.02",
        "RECOUP_WORKER_MAINTENANCE_SECONDS": "5",  # a Redis restart's lost periodic chains are back within 5 s
    }


class Month:
    """The running system of one chaos month and what its driver does to it."""

    def __init__(self, work: Path, *, seed: int) -> None:
        from sandbox.nmi.server import NmiSimulator
        from tests.private_servers import PrivateMariaDB, PrivateRedis
        from tests.providers import ChannelSimulators

        self.work = work
        self.rng = random.Random(seed)
        self.mariadb = PrivateMariaDB(work)
        self.redis = PrivateRedis(work)
        self.sims = ChannelSimulators()
        self.nmi = NmiSimulator(seed=seed)
        self.worker: Any = None
        self.env: dict[str, str] = {}
        self.customers: list[dict[str, Any]] = []
        self.phones_texted: list[str] = []

    # -- the worker, supervised ----------------------------------------------------------------------------------------
    def start_worker(self, report: ChaosReport) -> None:
        from tests.crash import start_worker

        self.worker = start_worker(self.env, self.work / "worker.log")
        report.worker_starts += 1

    def supervise(self, report: ChaosReport) -> None:
        """A supervisor's job (systemd's Restart=always): a worker that exited is started again."""
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker(report)

    def kill_worker(self) -> None:
        from tests.crash import kill_worker

        if self.worker is not None and self.worker.poll() is None:
            kill_worker(self.worker, signal.SIGKILL)

    # -- traffic -------------------------------------------------------------------------------------------------------
    def customer(self) -> dict[str, Any]:
        if self.customers and self.rng.random() < 0.2:  # a returning customer
            return self.rng.choice(self.customers)
        place = self.rng.choice(PLACES)
        n = len(self.customers) + 1
        found = {"first_name": f"Chaos{n}", "last_name": "Customer", "email": f"chaos{n}@example.com",
                 "phone": f"{place['phone']}{n:04d}", "country": place["country"],
                 "state": place["state"], "postal_code": place["postal_code"]}
        self.customers.append(found)
        return found

    def fail_payments(self, report: ChaosReport, count: int, hook_url: str) -> None:
        for _ in range(count):
            txn = self.nmi.add_transaction(condition="failed", amount=f"{self.rng.randint(5, 400)}.00",
                                           currency="USD", customer=dict(self.customer()))
            report.failures.append(txn.transaction_id)
            if self.rng.random() < 0.6:
                self.push(report, txn, hook_url)

    def push(self, report: ChaosReport, txn: Any, hook_url: str) -> None:
        delivery = self.nmi.send_webhook("transaction.sale.failure", txn, url=hook_url, timeout=10)
        report.webhooks[_outcome(delivery)] += 1
        if self.rng.random() < 0.15:  # NMI delivers the same event again
            again = self.nmi.send_webhook("transaction.sale.failure", txn, url=hook_url, event_id=delivery.event_id,
                                          timeout=10)
            report.webhooks["redelivered" if _outcome(again) == "pushed" else _outcome(again)] += 1

    def text_stop(self, report: ChaosReport, inbound_url: str) -> None:
        texted = [c["phone"] for c in self.customers if c["phone"] not in self.phones_texted]
        if texted:
            phone = self.rng.choice(texted)
            self.sims.twilio.send_inbound(phone, "STOP", url=inbound_url)
            self.phones_texted.append(phone)
            report.stops += 1

    # -- chaos ---------------------------------------------------------------------------------------------------------
    def break_things(self, what: str, report: ChaosReport, day: float) -> None:
        for part in what.split("+"):
            if part == "mariadb":
                self.mariadb.restart(down_seconds=1.5)
            elif part == "redis":
                self.redis.restart(down_seconds=1.0)
            elif part == "storm":
                self.sims.twilio.inject("http_503", count=12)
                self.sims.whatsapp.inject("http_500", count=4)
                self.sims.smtp.inject("mail_421", count=6)
            elif part == "timeouts":
                self.sims.twilio.inject("timeout", count=4, seconds=4)
                self.sims.whatsapp.inject("timeout", count=4, seconds=4)
            elif part == "worker_kill":
                self.kill_worker()
            elif part == "clock_jump":
                pass  # done by the caller, which moves the clock
        report.chaos.append(f"day {day:.1f}: {what}")


def _outcome(delivery: Any) -> str:
    if delivery.status is None:
        return "unreachable"
    return "pushed" if 200 <= delivery.status < 300 else f"refused_{delivery.status}"


def retrying(fn: Any, *, seconds: float = 60) -> Any:
    """``fn()``, tried again while the database is away (the driver's own queries during a restart)."""
    from sqlalchemy.exc import DBAPIError

    from app.extensions import db

    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except DBAPIError:
            db.session.rollback()
            db.session.remove()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def caught_up(failures: list[str], *, in_doubt: tuple[str, ...] = IN_DOUBT) -> tuple[bool, str]:
    """Has the system done everything it can now? Every failure ingested and planned, nothing in flight or in
    doubt (``in_doubt``), nothing due unsent. (What is still missing, for the report.)"""
    from app.clock import business_now
    from app.extensions import db
    from app.models import OutboxMessage, RecoveryCase, Transaction

    db.session.rollback()  # a fresh snapshot
    ingested = db.session.scalar(sa.select(sa.func.count(sa.distinct(Transaction.gateway_transaction_id)))
                                 .where(Transaction.gateway_transaction_id.in_(failures))) if failures else 0
    if ingested < len(failures):
        return False, f"{len(failures) - ingested} failure(s) not ingested"
    unplanned = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)
                                  .where(RecoveryCase.state == "open", RecoveryCase.plan.is_(None)))
    if unplanned:
        return False, f"{unplanned} open case(s) unplanned"
    states = dict(db.session.execute(
        sa.select(OutboxMessage.state, sa.func.count()).where(OutboxMessage.state.in_(in_doubt))
        .group_by(OutboxMessage.state)).all())
    if states:
        return False, f"in flight or in doubt: {states}"
    due = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.state == "scheduled", OutboxMessage.scheduled_for <= business_now()))
    if due:
        return False, f"{due} message(s) due"
    return True, ""


def chaos_month(work: Path, *, days: int = 30, step_hours: int = 17, per_step: int = 2, seed: int = 11,
                step_timeout: float = 90.0, without: tuple[str, ...] = ()) -> ChaosReport:
    """Run one chaos month in ``work`` (a scratch folder) and judge it."""
    from flask_migrate import upgrade

    from app import create_app
    from app.clock import advance
    from app.extensions import db
    from app.recovery.policies import activate_text
    from tests.live_server import LiveServer

    started = time.monotonic()
    report = ChaosReport(days=days)
    month = Month(work, seed=seed)
    month.mariadb.start()
    month.redis.start()
    month.sims.start()
    month.nmi.start()
    try:
        admin = sa.create_engine(month.mariadb.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE recoup_chaos CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        admin.dispose()
        app = create_app({
            "SQLALCHEMY_DATABASE_URI": f"{month.mariadb.url}/recoup_chaos?charset=utf8mb4",
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
            "SECRET_KEY": "chaos-" + os.urandom(8).hex(),
            "DEMO_CLOCK": True,
            "REDIS_URL": month.redis.url,
            "NMI_SECURITY_KEY": month.nmi.security_key,
            "NMI_WEBHOOK_SIGNING_KEY": month.nmi.webhook_signing_key,
            "NMI_API_URL": f"{month.nmi.url}/api",
        })
        with app.app_context(), LiveServer(app) as live:
            upgrade(directory=str(Path(__file__).resolve().parents[1] / "migrations"))
            activate_text("chaos", POLICY, actor=None, note="the chaos month")
            db.session.commit()
            month.sims.configure(app, public_url=live.url)
            month.sims.whatsapp.webhook_url = f"{live.url}/hooks/whatsapp"
            month.env = worker_env(app, month.redis.url, live.url)
            month.start_worker(report)
            plan = chaos_plan(days * 24 // step_hours, without)
            report.steps = days * 24 // step_hours
            for step in range(report.steps):
                day = step * step_hours / 24
                month.supervise(report)
                month.fail_payments(report, per_step, f"{live.url}/hooks/nmi")
                if month.rng.random() < 0.2:
                    month.text_stop(report, f"{live.url}/hooks/twilio/inbound")
                what = plan.get(step)
                if what:
                    month.break_things(what, report, day)
                if not settle(month, report, step_timeout):
                    report.late_steps += 1
                report.steps_done = step + 1
                jump = timedelta(days=3) if what == "clock_jump" else timedelta(0)
                retrying(lambda j=jump: advance(timedelta(hours=step_hours) + j, actor="chaos"))
            # the month is over: two more days with no new traffic, for what is still scheduled
            for _ in range(4):
                settle(month, report, step_timeout)
                retrying(lambda: advance(timedelta(hours=12), actor="chaos"))
            if not settle(month, report, 300, final=True):  # unknowns: review after UNKNOWN_REVIEW_HOURS at most
                report.late_steps += 1
            month.kill_worker()
            month.sims.twilio.wait_for_callbacks(10)
            month.sims.whatsapp.wait_for_webhooks(10)
            retrying(lambda: judge(report, month, app))
    finally:
        month.kill_worker()
        month.sims.stop()
        month.nmi.stop()
        month.redis.stop()
        month.mariadb.stop()
    log = month.work / "worker.log"
    report.log_tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    report.seconds = time.monotonic() - started
    return report


def settle(month: Month, report: ChaosReport, timeout: float, *, final: bool = False) -> bool:
    """Wait (a supervisor watching the worker) until the system caught up, or ``timeout``. Between steps, rows in
    ``unknown`` are reconciliation's business (it asks the provider, or waits for evidence, in the background); at
    the end they must be settled too."""
    in_doubt = IN_DOUBT if final else tuple(s for s in IN_DOUBT if s != "unknown")
    started = time.monotonic()
    missing = ""
    while time.monotonic() < started + timeout:
        month.supervise(report)
        done, missing = retrying(lambda: caught_up(report.failures, in_doubt=in_doubt))
        if done:
            report.waits.append(time.monotonic() - started)
            return True
        time.sleep(0.25)
    report.waits.append(time.monotonic() - started)
    report.late.append(f"after {report.steps_done} step(s), {timeout:.0f} s: {missing}")
    return False


def judge(report: ChaosReport, month: Month, app: Any) -> None:
    from app.audit import verify_chain
    from app.extensions import db
    from app.models import ConsentEvent, Customer, MessageEvent, OutboxMessage, RecoveryCase, Transaction
    from app.recovery.planning import customer_zones
    from rules.vocabulary import CHANNELS

    db.session.rollback()
    problems = report.problems
    _, missing = caught_up(report.failures)
    if missing:
        problems.append(f"not caught up at the end: {missing}")

    # every failure ingested once, one case each
    per_txn = Counter(dict(db.session.execute(
        sa.select(Transaction.gateway_transaction_id, sa.func.count()).where(
            Transaction.gateway_transaction_id.in_(report.failures)).group_by(Transaction.gateway_transaction_id)
    ).all()))
    for txn in report.failures:
        if per_txn[txn] != 1:
            problems.append(f"NMI transaction {txn} ingested {per_txn[txn]} time(s)")
    cases = Counter(dict(db.session.execute(
        sa.select(Transaction.gateway_transaction_id, sa.func.count(RecoveryCase.id))
        .join(RecoveryCase, RecoveryCase.transaction_id == Transaction.id)
        .where(Transaction.gateway_transaction_id.in_(report.failures)).group_by(Transaction.gateway_transaction_id)
    ).all()))
    for txn in report.failures:
        if cases[txn] != 1:
            problems.append(f"NMI transaction {txn} has {cases[txn]} case(s)")

    # every message: once, or held for a person; never in doubt; never due unsent
    rows = db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.state)
                              .where(OutboxMessage.channel.in_(CHANNELS))).all()
    sims = month.sims
    for mid, channel, state in rows:
        copies = sims.smtp.count(f"m{mid}") + sims.twilio.count(f"m{mid}") + sims.whatsapp.count(f"m{mid}")
        report.messages[state] += 1
        if copies > 1:
            problems.append(f"message {mid} ({channel}, {state}) reached the provider {copies} times")
        if state in SENT_STATES:
            report.sent[channel] += 1
            if copies != 1:
                problems.append(f"message {mid} ({channel}) is {state} but reached the provider {copies} time(s)")
        elif state in IN_DOUBT:
            problems.append(f"message {mid} ({channel}) left {state}")
        elif state == "review":
            report.review += 1
            report.review_arrived += copies == 1

    # attempts: outside quiet hours in every zone of the customer, never on a channel opted out before
    opt_outs: dict[tuple[int, str], datetime] = {}
    for customer_id, channel, action, at in db.session.execute(
            sa.select(ConsentEvent.customer_id, ConsentEvent.channel, ConsentEvent.action, ConsentEvent.at)
            .order_by(ConsentEvent.id)).all():
        if action == "opt_out":
            opt_outs.setdefault((customer_id, channel), at)
        else:
            opt_outs.pop((customer_id, channel), None)
    zones: dict[int, tuple[str, ...]] = {}
    attempts = db.session.execute(
        sa.select(MessageEvent.message_id, MessageEvent.provider_payload, MessageEvent.recorded_at,
                  OutboxMessage.customer_id)
        .join(OutboxMessage, OutboxMessage.id == MessageEvent.message_id)
        .where(MessageEvent.kind == "attempt", OutboxMessage.channel.in_(CHANNELS))
    ).all()
    for mid, payload, recorded_at, customer_id in attempts:
        payload = payload or {}
        checked = datetime.fromisoformat(payload["checked_at"]) if payload.get("checked_at") else None
        if checked is None:
            problems.append(f"message {mid}: an attempt without the business time it was checked at")
            continue
        # the zones the rules fitted the send into, as the attempt recorded them (a customer's later payment may
        # bring a new address, and with it other zones); the customer's zones now for an attempt that has none
        fitted = payload.get("zones")
        if not fitted and customer_id not in zones:
            customer = db.session.get(Customer, customer_id)
            zones[customer_id] = customer_zones(customer) if customer is not None else ()
        for name in fitted or zones[customer_id] or ("UTC",):
            local = checked.astimezone(ZoneInfo(name)).time()
            if local >= QUIET_FROM or local < QUIET_UNTIL:
                problems.append(f"message {mid} ({payload.get('channel')}) was sent at {local:%H:%M} in {name}, "
                                "in quiet hours")
        opted = opt_outs.get((customer_id, payload.get("channel")))
        if opted is not None and recorded_at > opted:
            problems.append(f"message {mid} went by {payload.get('channel')} at {recorded_at:%H:%M:%S} UTC after "
                            f"its customer opted out at {opted:%H:%M:%S}")

    said = (sa.select(MessageEvent.kind, MessageEvent.provider_payload)
            .where(MessageEvent.kind.in_(("review", "unknown"))))
    for kind, payload in db.session.execute(said):
        payload = payload or {}
        if kind == "review":
            report.review_why[str(payload.get("why", "?"))[:160]] += 1
        else:
            before = str(payload.get("error_text") or payload.get("why") or "?")[:140]
            report.review_why[f"unknown before: {before}"] += 1

    check = verify_chain(app.config)
    if not check.ok:
        problems.append(f"the audit chain does not verify: {check.problem}")

