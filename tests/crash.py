"""One crash round: due messages (email, SMS, WhatsApp in turn, and every tenth a payment's receipt) dispatched by a
real RQ worker process on MariaDB + Redis, SIGKILLed (with the work-horse sending right now) several times while
sending, and restarted each time. The simulators' own counts per reference are the judge afterwards.

Used by ``tests/workers/test_dispatch_crash.py`` (one big round, asserted) and ``bench/soak.py`` (many rounds,
duplicates and losses per channel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
SETTLED = ("sent", "delivered", "read", "review")


def states(db: Any) -> Counter[str]:
    db.session.rollback()  # a fresh snapshot (MariaDB is REPEATABLE READ)
    from app.models import OutboxMessage

    rows = db.session.execute(sa.select(OutboxMessage.state, sa.func.count()).group_by(OutboxMessage.state)).all()
    return Counter({state: count for state, count in rows})


def start_worker(env: dict[str, str], log_path: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``flask worker`` (RQ), its output appended to ``log_path``; ``prefix`` runs it through another command (e.g.
    ``ip netns exec <ns>``, which execs it: the process is the worker)."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def run_worker_burst(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``flask worker --burst``: every job waiting run through the real CLI and RQ, then the worker exits (its exit
    status checked; its output returned)."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def descendants(pid: int) -> list[int]:
    """Processes started under ``pid`` (RQ forks a work-horse per job and puts it in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
    """The worker and what it forked (the work-horse sending right now), all at once; returns how many died."""
    victims = [*descendants(proc.pid), proc.pid]
    for pid in victims:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    proc.wait(30)
    return len(victims)


#: the settings that point a worker process's provider clients at the simulators an app was configured with
PROVIDER_SETTINGS = ("SMTP_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM", "TWILIO_API_URL",
                     "WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_API_URL")


def provider_env(app: Any) -> dict[str, str]:
    return {name: str(app.config[name]) for name in PROVIDER_SETTINGS}


def worker_env(app: Any, redis_url: str, concurrency: int) -> dict[str, str]:
    """The environment of a worker process of a crash round: ``app``'s database and provider settings (the
    simulators), ``redis_url``, and short clocks."""
    return {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_url,
        "SECRET_KEY": app.config["SECRET_KEY"],
        # SMS status callbacks go nowhere (SMS is reconciled from Twilio's message list; fewer webhooks
        # keep the round within its time); WhatsApp's status webhooks reach the live app
        "RECOUP_PUBLIC_URL": "http://127.0.0.1:9",
        **provider_env(app),
        "RECOUP_FETCH_INTERVAL": "3600",
        "RECOUP_DISPATCH_INTERVAL": "2",
        # short clocks, so the deaths are settled within the round
        "DISPATCH_LEASE_SECONDS": "3",
        "DISPATCH_BUDGET_SECONDS": "8",
        "DISPATCH_CONCURRENCY": str(concurrency),
        "WHATSAPP_RECONCILE_SECONDS": "3",
        # a WhatsApp request cut off by a kill that Meta never read has no status, and the last of a round has no
        # later traffic to show the pipe works: it waits for this fallback (a day in production), then review
        "UNKNOWN_REVIEW_HOURS": "0.01",
        "CONSOLIDATE_WINDOW_HOURS": "0",
    }


@dataclass
class CrashRound:
    """What one round did and what the simulators received."""

    n: int
    concurrency: int
    kills: list[Counter[str]] = field(default_factory=list)
    final: Counter[str] = field(default_factory=Counter)
    channel: dict[int, str] = field(default_factory=dict)  # message id -> channel
    state: dict[int, str] = field(default_factory=dict)  # message id -> final state
    received: dict[int, int] = field(default_factory=dict)  # message id -> copies the simulators got
    receipts: set[int] = field(default_factory=set)
    events: Counter[str] = field(default_factory=Counter)
    log_tail: str = ""
    seconds: float = 0.0
    trouble: str = ""  # the states and events of a few messages lost or never settled, for whoever reads a failure

    @property
    def settled(self) -> int:
        return sum(self.final[s] for s in SETTLED)

    def twice(self) -> list[int]:
        return sorted(i for i, c in self.received.items() if c > 1)

    def lost(self) -> list[int]:
        """Not held for a person, and not received exactly once (never settled, or settled but never arrived)."""
        return sorted(i for i in self.received if self.state.get(i) != "review" and self.received[i] != 1)

    def review(self) -> list[int]:
        return sorted(i for i in self.received if self.state.get(i) == "review")

    def by_channel(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        twice, lost, review = set(self.twice()), set(self.lost()), set(self.review())
        for mid, channel in self.channel.items():
            name = "receipt" if mid in self.receipts else channel
            row = out.setdefault(name, {"messages": 0, "duplicates": 0, "lost": 0, "review": 0, "review_arrived": 0})
            row["messages"] += 1
            row["duplicates"] += mid in twice
            row["lost"] += mid in lost
            row["review"] += mid in review
            row["review_arrived"] += mid in review and self.received[mid] == 1
        return out


def seed_round(db: Any, *, n: int, concurrency: int, receipt_every: int = 10) -> tuple[list[int], CrashRound]:
    """``n`` due messages (every ``receipt_every``-th a receipt) and the round that will judge them."""
    from app.models import OutboxMessage
    from app.payments.receipts import RECEIPT_TEMPLATE
    from tests.seeds import seed_due_messages

    ids = seed_due_messages(n, receipt_every=receipt_every)
    result = CrashRound(n=n, concurrency=concurrency)
    result.receipts = set(db.session.scalars(sa.select(OutboxMessage.id)
                                             .where(OutboxMessage.template == RECEIPT_TEMPLATE)))
    result.channel = dict(db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.channel)
                                             .where(OutboxMessage.id.in_(ids))).all())
    return ids, result


def crash_round(app: Any, db: Any, *, n: int, redis_url: str, work_dir: Path, kills: int = 5,
                concurrency: int = 32, receipt_every: int = 10, deadline_seconds: float = 480) -> CrashRound:
    """Seed ``n`` due messages in ``db`` (empty outbox expected), dispatch them with a worker killed ``kills`` times,
    wait until everything settled (or the deadline), and count what the simulators received."""
    from redis import Redis

    from app.queue import RQQueue
    from tests.live_server import LiveServer
    from tests.providers import ChannelSimulators
    from workers import jobs

    redis = Redis.from_url(redis_url)
    redis.flushdb()
    ids, result = seed_round(db, n=n, concurrency=concurrency, receipt_every=receipt_every)
    sims = ChannelSimulators()
    sims.start()
    worker: subprocess.Popen[bytes] | None = None
    log_path = work_dir / "worker.log"
    started = time.monotonic()
    try:
        with LiveServer(app) as live:
            sims.configure(app, public_url=live.url)
            sims.whatsapp.webhook_url = f"{live.url}/hooks/whatsapp"
            env = worker_env(app, redis_url, concurrency)
            queue = RQQueue(redis_url)
            thresholds = [int(n * (0.1 + 0.6 * k / max(kills - 1, 1))) for k in range(kills)]
            worker = start_worker(env, log_path)
            deadline = time.monotonic() + deadline_seconds
            while time.monotonic() < deadline:
                if len(queue.queues["urgent"]) == 0:
                    queue.enqueue(jobs.dispatch_due, queue="urgent")
                now = states(db)
                done = sum(now[s] for s in SETTLED)
                in_flight = now["claimed"] + now["sending"] + now["delivering"]
                if len(result.kills) < kills and done >= thresholds[len(result.kills)] and in_flight:
                    horse = kill_worker(worker) >= 2  # else it was between jobs: not during dispatch, again
                    worker = start_worker(env, log_path)
                    if horse:
                        result.kills.append(now)
                    continue
                if done == n:  # everything settled: nothing left to kill (a small round may outrun its kills)
                    break
                time.sleep(0.3)
            kill_worker(worker, signal.SIGTERM)
            worker = None
            sims.twilio.wait_for_callbacks(10)
            sims.whatsapp.wait_for_webhooks(10)
            result.final = states(db)
    finally:
        if worker is not None:
            kill_worker(worker)
        sims.stop()
        redis.flushdb()
    result.seconds = time.monotonic() - started
    result.log_tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    judge(result, db, sims, ids)
    return result


def judge(result: CrashRound, db: Any, sims: Any, ids: list[int]) -> None:
    """Fill in what the simulators received per message, the final states and the recovery events."""
    from app.models import MessageEvent, OutboxMessage

    result.received = {i: sims.smtp.count(f"m{i}") + sims.twilio.count(f"m{i}") + sims.whatsapp.count(f"m{i}")
                       for i in ids}
    result.state = dict(db.session.execute(sa.select(OutboxMessage.id, OutboxMessage.state)
                                           .where(OutboxMessage.id.in_(ids))).all())
    result.events = Counter(dict(db.session.execute(
        sa.select(MessageEvent.kind, sa.func.count()).where(
            MessageEvent.kind.in_(("reclaimed", "unknown", "reconciled", "review", "attempt"))
        ).group_by(MessageEvent.kind)
    ).all()))
    unsettled = [i for i in ids if result.state.get(i) not in SETTLED]
    troubled = sorted(set(unsettled) | set(result.lost()) | set(result.twice()))[:5]
    if troubled:
        result.trouble = "\n".join(
            [f"  m{i} ({result.channel.get(i)}): {result.state.get(i)}, received {result.received.get(i)}"
             for i in troubled] + [story(db, troubled)])


def story(db: Any, message_ids: list[int]) -> str:
    """The events of a few messages, for whoever reads a failure."""
    from app.models import MessageEvent

    history = db.session.execute(
        sa.select(MessageEvent.message_id, MessageEvent.kind, MessageEvent.occurred_at, MessageEvent.recorded_at,
                  MessageEvent.provider_payload)
        .where(MessageEvent.message_id.in_(message_ids)).order_by(MessageEvent.message_id, MessageEvent.id)
    ).all()
    return "\n".join(f"  m{m} {kind} at {at:%H:%M:%S.%f} (recorded {rec:%H:%M:%S.%f}) {payload}"
                     for m, kind, at, rec, payload in history)
