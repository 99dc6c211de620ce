"""Dispatch throughput: N due messages (email, SMS, WhatsApp in turn) sent to the simulators, which answer after
50 ms, with the outbox on MariaDB.

Three runs in one process tree, each on a fresh outbox:
  1. sequential: one dispatch process sending one message at a time (DISPATCH_CONCURRENCY=1), on a sample;
  2. one dispatch process with DISPATCH_CONCURRENCY sends in flight;
  3. two such processes on the same outbox.
Throughput is measured from the database (first attempt to last result), so process start-up is not counted.
Prints messages per second, the concurrent/sequential ratio (target >= 20x) and the one-to-two-process speed-up
(target >= 1.7x), and checks every message reached its simulator exactly once. Last, the ceiling any number of
processes has on this machine: its cores over the CPU a message costs (dispatch, simulators and MariaDB together).

    .venv/bin/python bench/dispatch.py [--n 10000] [--concurrency 64] [--delay 0.05]

MariaDB: ``RECOUP_BENCH_MYSQL_URL`` (a server URL, default ``mysql+pymysql://root:@127.0.0.1:3306``); a database
of its own is created and dropped. Status callbacks are off (they are the web app's load, not the dispatcher's):
the Twilio simulator sends none, and the WhatsApp simulator has no webhook URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

CHANNELS = ("email", "sms", "whatsapp")
PRIORITIES = ("low", "default", "default", "high", "urgent")


# -- the outbox ------------------------------------------------------------------------------------------------------
def seed_due_messages(n: int, *, channels: tuple[str, ...] = CHANNELS, due: datetime | None = None) -> list[int]:
    """``n`` due outbox rows, one customer / transaction / case each, channels in turn; returns their ids.
    Needs an app context. No policy version: the contact windows are not re-checked (the bench runs at any hour)."""
    from app.extensions import db
    from app.models import Customer, GatewayAccount, OutboxMessage, RecoveryCase, Transaction

    due = due or datetime.now(UTC) - timedelta(minutes=1)
    tag = secrets.token_hex(3)
    account = GatewayAccount(name=f"bench-{tag}", gateway="nmi")
    db.session.add(account)
    db.session.flush()

    def next_id(model: Any) -> int:
        return int(db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(model.id), 0))) or 0) + 1

    c0, t0, k0, m0 = next_id(Customer), next_id(Transaction), next_id(RecoveryCase), next_id(OutboxMessage)
    customers, transactions, cases, messages = [], [], [], []
    for i in range(n):
        phone = f"+1305{(c0 + i) % 10_000_000:07d}"
        customers.append({
            "id": c0 + i, "first_name": "Ana", "last_name": f"Bench {i}", "email": f"bench{c0 + i}@example.com",
            "phone_e164": phone, "country": "US", "region": "FL", "locale": "en_US", "timezone": "America/New_York",
            "timezone_candidates": ["America/New_York"], "tags": [],
        })
        transactions.append({
            "id": t0 + i, "gateway": "nmi", "gateway_account_id": account.id, "customer_id": c0 + i,
            "gateway_transaction_id": f"bench-{tag}-{i}", "amount_minor": 1000 + i % 9000, "currency": "USD",
            "decline_code": "202", "decline_reason": "insufficient_funds", "failed_at": due, "raw": {},
        })
        cases.append({
            "id": k0 + i, "transaction_id": t0 + i, "customer_id": c0 + i, "amount_due_minor": 1000 + i % 9000,
            "currency": "USD", "state": "open",
        })
        channel = channels[i % len(channels)]
        messages.append({
            "id": m0 + i, "case_id": k0 + i, "customer_id": c0 + i, "step_n": 1, "channel": channel,
            "fallbacks": [], "address": phone if channel != "email" else f"bench{c0 + i}@example.com",
            "template": "payment_failed", "locale": "en_US", "priority": PRIORITIES[i % len(PRIORITIES)],
            "state": "scheduled", "scheduled_for": due, "deferred_by": [], "attempts": 0,
            "idempotency_key": f"bench:{tag}:{i}",
        })
    for model, rows in ((Customer, customers), (Transaction, transactions), (RecoveryCase, cases),
                        (OutboxMessage, messages)):
        for start in range(0, len(rows), 2000):
            db.session.execute(sa.insert(model), rows[start:start + 2000])
    db.session.commit()
    return [m["id"] for m in messages]


def empty_outbox() -> None:
    from app.extensions import db
    from app.models import (
        Customer,
        GatewayAccount,
        MessageEvent,
        OutboxMessage,
        PaymentLink,
        RecoveryCase,
        Transaction,
    )
    from app.models.cases import CaseTransition

    for model in (MessageEvent, PaymentLink, OutboxMessage, CaseTransition, RecoveryCase, Transaction, Customer,
                  GatewayAccount):
        db.session.execute(sa.delete(model))
    db.session.commit()


def measured_rate(ids: list[int]) -> tuple[float, int]:
    """(messages per second from the first attempt to the last result, messages sent)."""
    from app.extensions import db
    from app.models import MessageEvent, OutboxMessage

    db.session.rollback()
    sent = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.state.in_(("sent", "delivered", "read"))))
    first = db.session.scalar(sa.select(sa.func.min(MessageEvent.occurred_at)).where(MessageEvent.kind == "attempt"))
    last = db.session.scalar(sa.select(sa.func.max(OutboxMessage.sent_at)))
    if not sent or first is None or last is None:
        return 0.0, int(sent or 0)
    seconds = max((last - first).total_seconds(), 1e-3)
    return sent / seconds, int(sent)


# -- the dispatch process ------------------------------------------------------------------------------------------
def worker_main() -> None:
    """A dispatch loop process: runs dispatch_due until nothing is due (configured from the environment)."""
    from app import create_app
    from app.outbox.run import dispatch_due

    app = create_app()
    with app.app_context():
        idle = 0
        while idle < 2:
            report = dispatch_due(budget_seconds=600)
            idle = idle + 1 if not report.get("claimed") else 0
            if not report.get("claimed"):
                time.sleep(0.2)


def run_workers(count: int, env: dict[str, str]) -> None:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT, env=env) for _ in range(count)]
    for proc in procs:
        if proc.wait(timeout=1800) != 0:
            raise SystemExit(f"a dispatch process failed with exit code {proc.returncode}")


# -- where the CPU goes ----------------------------------------------------------------------------------------
def _mariadb_cpu() -> float | None:
    """CPU seconds the local MariaDB server has used so far (None when it is not a local process we can read)."""
    try:
        pid = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True, check=True).stdout.split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, subprocess.CalledProcessError):
        return None


class CpuMeter:
    """CPU seconds used during a run by the dispatch processes (waited-for children: start-up included), by this
    process (the simulators' threads: the main thread only waits) and by the MariaDB server."""

    def __enter__(self) -> CpuMeter:
        self.start = (resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF),
                      _mariadb_cpu(), time.monotonic())
        return self

    def __exit__(self, *exc: object) -> None:
        children, me, db, started = self.start
        now_children, now_me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        self.dispatch = now_children.ru_utime + now_children.ru_stime - children.ru_utime - children.ru_stime
        self.simulators = now_me.ru_utime + now_me.ru_stime - me.ru_utime - me.ru_stime
        db_now = _mariadb_cpu()
        self.database = (db_now - db) if db is not None and db_now is not None else None
        self.wall = time.monotonic() - started

    def per_message(self, n: int) -> float | None:
        """CPU seconds per message of everything the run used (None when MariaDB's share is unknown)."""
        if self.database is None:
            return None
        return (self.dispatch + self.simulators + self.database) / n

    def line(self, n: int) -> str:
        per = {"dispatch": self.dispatch, "simulators": self.simulators, "MariaDB": self.database}
        parts = [f"{name} {1000 * sec / n:5.2f}" for name, sec in per.items() if sec is not None]
        busy = sum(sec for sec in per.values() if sec is not None) / self.wall
        return f"  cpu ms/message: {', '.join(parts)}; {busy:.2f} of {os.cpu_count()} cores busy"


# -- main ------------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sequential-n", type=int, default=300, help="sample size of the sequential run")
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("DISPATCH_CONCURRENCY", 64)))
    parser.add_argument("--delay", type=float, default=0.05, help="simulator answer delay, seconds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return

    from flask_migrate import upgrade

    from app import create_app
    from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM
    from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN
    from tests.providers import ChannelSimulators

    server = os.environ.get("RECOUP_BENCH_MYSQL_URL", "mysql+pymysql://root:@127.0.0.1:3306").rstrip("/")
    name = f"recoup_bench_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    url = f"{server}/{name}?charset=utf8mb4"
    sims = ChannelSimulators()
    for sim in (sims.smtp, sims.twilio, sims.whatsapp):
        sim.response_delay = args.delay
    sims.start()
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True}})
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a log line per simulated request is not the bench
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
        base_env = {
            **os.environ,
            "DATABASE_URL": url,
            "SMTP_URL": sims.smtp.url,
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
            "TWILIO_FROM": DEFAULT_FROM,
            "TWILIO_API_URL": sims.twilio.url,
            "WHATSAPP_TOKEN": DEFAULT_TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": DEFAULT_PHONE_NUMBER_ID,
            "WHATSAPP_API_URL": sims.whatsapp.url + "/v21.0",
            "RECOUP_PUBLIC_URL": "http://127.0.0.1:9",  # status callbacks go nowhere (see the docstring)
            "CONSOLIDATE_WINDOW_HOURS": "0",
        }
        results: dict[str, float] = {}
        cpu_per_message: dict[str, float | None] = {}
        runs = (("sequential", 1, 1, min(args.sequential_n, args.n)),
                ("1 process", 1, args.concurrency, args.n),
                ("2 processes", 2, args.concurrency, args.n))
        for label, processes, concurrency, n in runs:
            sims.reset()
            sims.twilio.send_status_callbacks = False  # see the docstring
            with app.app_context():
                empty_outbox()
                ids = seed_due_messages(n)
            env = {**base_env, "DISPATCH_CONCURRENCY": str(concurrency)}
            started = time.monotonic()
            with CpuMeter() as cpu:
                run_workers(processes, env)
            wall = time.monotonic() - started
            with app.app_context():
                rate, sent = measured_rate(ids)
            counts = [sims.smtp.count(f"m{i}") + sims.twilio.count(f"m{i}") + sims.whatsapp.count(f"m{i}")
                      for i in ids]
            twice = sum(1 for c in counts if c > 1)
            missing = sum(1 for c in counts if c == 0)
            results[label] = rate
            cpu_per_message[label] = cpu.per_message(n)
            print(f"{label:12} n={n:6}  concurrency={concurrency:3}  {rate:8.1f} msg/s  "
                  f"(wall {wall:5.1f} s incl. start-up)  sent={sent}  missing={missing}  twice={twice}", flush=True)
            print(cpu.line(n), flush=True)
            if twice or missing:
                raise SystemExit(f"{label}: {twice} message(s) received twice, {missing} never")
        seq = results["sequential"] or 1e-9
        print(f"throughput vs sequential:  1 process {results['1 process'] / seq:5.1f}x   "
              f"2 processes {results['2 processes'] / seq:5.1f}x   (target >= 20x)")
        print(f"speed-up from 1 to 2 processes: {results['2 processes'] / (results['1 process'] or 1e-9):4.2f}x"
              f"   (target >= 1.7x)")
        per = cpu_per_message["1 process"]
        if per:
            # Everything shares this machine's cores: the dispatch processes, the simulators and MariaDB. However
            # many processes dispatch, the messages per second cannot exceed cores / CPU per message.
            ceiling = (os.cpu_count() or 1) / per
            print(f"this machine's ceiling: {os.cpu_count()} cores / {1000 * per:.2f} ms of CPU per message (dispatch, "
                  f"simulators and MariaDB, 1-process run) = {ceiling:.0f} msg/s, "
                  f"{ceiling / (results['1 process'] or 1e-9):4.2f}x the 1-process rate")
    finally:
        sims.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


if __name__ == "__main__":
    main()
