"""Dispatch against the bare minimum: N due messages (email, SMS, WhatsApp in turn) sent to the simulators, which
answer after 50 ms, with the outbox on MariaDB.

Four runs in one process tree, each on a fresh outbox:
  1. sequential: one dispatch process sending one message at a time (DISPATCH_CONCURRENCY=1), on a sample;
  2. one dispatch process with DISPATCH_CONCURRENCY sends in flight;
  3. two such processes on the same outbox;
  4. the bare send: the same messages, rendered by Recoup beforehand, sent by one process with the same
     concurrency over kept-alive connections (one SMTP connection per thread, one HTTP pool) to the same
     simulators, with one UPDATE by primary key per message and nothing else: no claim, no checks, no events.
Throughput is measured from the database (first attempt to last result), so process start-up is not counted; CPU
is each process's own CPU time while it works (``time.process_time``, not wall time; start-up not counted), and
for the ceiling the simulators' and MariaDB's too.

Verdicts: the dispatcher's CPU per message at most 3x the bare send's; one process at least 20x sequential; two
processes at least 0.9 of this machine's ceiling (its cores over the CPU a message costs everything: the dispatch
processes, the simulators and MariaDB). Every message must reach its simulator exactly once.

    .venv/bin/python bench/dispatch.py [--n 10000] [--concurrency 64] [--delay 0.05] [--profile out.txt]

MariaDB: ``RECOUP_BENCH_MYSQL_URL`` (a server URL, default ``mysql+pymysql://root:@127.0.0.1:3306``); a database
of its own is created and dropped. Status callbacks are off (they are the web app's load, not the dispatcher's):
the Twilio simulator sends none, and the WhatsApp simulator has no webhook URL.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

TARGET_CPU_RATIO = 3.0
TARGET_CONCURRENT = 20.0
TARGET_CEILING = 0.9


# -- the outbox ------------------------------------------------------------------------------------------------------
def empty_outbox() -> None:
    from app.extensions import db
    from app.models import (
        Customer,
        GatewayAccount,
        MessageEvent,
        OutboxMessage,
        Payment,
        PaymentLink,
        RecoveryCase,
        Transaction,
    )
    from app.models.cases import CaseTransition

    for model in (MessageEvent, PaymentLink, Payment, OutboxMessage, CaseTransition, RecoveryCase, Transaction,
                  Customer, GatewayAccount):
        db.session.execute(sa.delete(model))
    db.session.commit()


def measured_rate() -> tuple[float, int]:
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


def _report(path: str | None, **values: Any) -> None:
    """A worker tells the bench what it measured (one JSON line per process)."""
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(values) + "\n")


# -- the dispatch process ------------------------------------------------------------------------------------------
class _Profiler:
    """CPU time of every thread with yappi when it is installed (the sends run on a thread pool, which cProfile,
    profiling the main thread only, would not see); else cProfile's wall time of the main thread. Either way a
    pstats file."""

    def __init__(self, path: str) -> None:
        try:
            import yappi
        except ImportError:
            import cProfile

            self._yappi, self._cprofile = None, cProfile.Profile()
            print("bench: yappi not installed: profiling the main thread only (pip install yappi)", file=sys.stderr)
        else:
            self._yappi, self._cprofile = yappi, None
            yappi.set_clock_type("cpu")

    def start(self) -> None:
        if self._yappi is not None:
            self._yappi.start()
        else:
            self._cprofile.enable()

    def stop(self, path: str) -> None:
        if self._yappi is not None:
            self._yappi.stop()
            self._yappi.get_func_stats().save(path, type="pstat")
        else:
            self._cprofile.disable()
            self._cprofile.dump_stats(path)


def worker_main() -> None:
    """A dispatch loop process: runs dispatch_due until nothing is due (configured from the environment)."""
    from app import create_app
    from app.ops.runtime import settle_garbage_collector
    from app.outbox.run import dispatch_due

    app = create_app()
    settle_garbage_collector()  # as `flask worker` does before its first job
    profile = os.environ.get("RECOUP_BENCH_PROFILE")
    profiler = _Profiler(profile) if profile else None
    with app.app_context():
        started = time.process_time()
        if profiler is not None:
            profiler.start()
        idle = 0
        while idle < 2:
            report = dispatch_due(budget_seconds=600)
            idle = idle + 1 if not report.get("claimed") else 0
            if not report.get("claimed"):
                time.sleep(0.2)
        if profiler is not None:
            profiler.stop(f"{profile}.{os.getpid()}")
        # the idle passes at the end (two empty claims and their sleeps) cost next to nothing
        _report(os.environ.get("RECOUP_BENCH_REPORT"), cpu=time.process_time() - started)


def run_workers(count: int, env: dict[str, str], mode: str = "--worker") -> None:
    procs = [subprocess.Popen([sys.executable, __file__, mode], cwd=ROOT, env=env) for _ in range(count)]
    for proc in procs:
        if proc.wait(timeout=1800) != 0:
            raise SystemExit(f"a {mode[2:]} process failed with exit code {proc.returncode}")


# -- the bare send ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Wire:
    """One message as it goes on the wire, rendered beforehand."""

    message_id: int
    channel: str
    target: str  # email: the recipient; SMS and WhatsApp: the URL
    body: Any  # email: the MIME bytes; SMS: the form; WhatsApp: the JSON
    sender: str = ""  # email: the envelope sender
    headers: tuple[tuple[str, str], ...] = ()


def prerender(ids: list[int]) -> dict[str, Any]:
    """The messages ``ids`` exactly as Recoup would send them (its composer and its clients' wire formats), and what
    the bare sender needs to reach the simulators. Nothing is written (the payment links are rolled back)."""
    from flask import current_app

    from app.channels.email import MESSAGE_POLICY
    from app.extensions import db
    from app.models import Customer, OutboxMessage, RecoveryCase
    from app.outbox.compose import compose
    from app.outbox.senders import senders_for

    senders = senders_for(current_app._get_current_object())  # type: ignore[attr-defined]
    wires: list[Wire] = []
    for start in range(0, len(ids), 500):
        rows = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.id.in_(ids[start:start + 500])))
        for row in rows:
            case = db.session.get(RecoveryCase, row.case_id)
            customer = db.session.get(Customer, row.customer_id)
            outbound = compose(row, case, customer, row.channel)
            sender = senders[row.channel]
            if row.channel == "email":
                email = sender.build(outbound)
                wires.append(Wire(row.id, "email", outbound.to, email.as_bytes(policy=MESSAGE_POLICY),
                                  sender=sender._envelope_from(outbound)))
            elif row.channel == "sms":
                wires.append(Wire(row.id, "sms", sender.messages_url, sender.form(outbound),
                                  headers=(("X-Recoup-Reference", outbound.reference),)))
            else:
                wires.append(Wire(row.id, "whatsapp", sender.messages_url, sender.payload(outbound)))
        db.session.rollback()
    sms, whatsapp = senders["sms"], senders["whatsapp"]
    return {"wires": wires, "smtp": (senders["email"].host, senders["email"].port),
            "sms_auth": sms.session.auth, "whatsapp_headers": dict(whatsapp.session.headers)}


def bare_main() -> None:
    """The bare send: pre-rendered messages, the same concurrency, kept-alive connections, one UPDATE each."""
    import smtplib
    from datetime import UTC, datetime

    import pymysql
    import requests
    from requests.adapters import HTTPAdapter

    from app.ops.runtime import settle_garbage_collector

    with open(os.environ["RECOUP_BENCH_WIRES"], "rb") as src:
        plan = pickle.load(src)
    settle_garbage_collector()  # the baseline gets the dispatcher's collector settings
    concurrency = int(os.environ["DISPATCH_CONCURRENCY"])
    url = sa.engine.make_url(os.environ["DATABASE_URL"])
    http = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=concurrency)
    http.mount("http://", adapter)
    local = threading.local()
    update = "UPDATE outbox_messages SET state = 'sent', sent_at = %s, provider_message_id = %s WHERE id = %s"

    def send(wire: Wire) -> None:
        if wire.channel == "email":
            smtp = getattr(local, "smtp", None)
            if smtp is None:
                smtp = local.smtp = smtplib.SMTP(*plan["smtp"])
            smtp.sendmail(wire.sender, [wire.target], wire.body)
            provider_id = f"m{wire.message_id}"
        elif wire.channel == "sms":
            answer = http.post(wire.target, data=wire.body, headers=dict(wire.headers), auth=plan["sms_auth"])
            provider_id = answer.json()["sid"]
        else:
            answer = http.post(wire.target, json=wire.body, headers=plan["whatsapp_headers"])
            provider_id = answer.json()["messages"][0]["id"]
        conn = getattr(local, "db", None)
        if conn is None:
            conn = local.db = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                              password=url.password or "", database=url.database, autocommit=True)
        with conn.cursor() as cursor:
            cursor.execute(update, (datetime.now(UTC).replace(tzinfo=None), provider_id, wire.message_id))

    started, wall = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for done in pool.map(send, plan["wires"]):
            del done
    _report(os.environ.get("RECOUP_BENCH_REPORT"), cpu=time.process_time() - started,
            seconds=time.monotonic() - wall, n=len(plan["wires"]))


# -- where the CPU goes ----------------------------------------------------------------------------------------
def _mariadb_cpu() -> float | None:
    """CPU seconds the local MariaDB server has used so far (None when it is not a local process we can read)."""
    try:
        pid = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True, check=True).stdout.split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, subprocess.CalledProcessError):
        return None


def _machine_cpu() -> float | None:
    """CPU seconds every process on this machine has used so far (``/proc/stat``), None where it cannot be read."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class CpuMeter:
    """CPU seconds used during a run: by the worker processes while they worked (their own reports), by this
    process (the simulators' threads: the main thread only waits) and by the MariaDB server."""

    def __init__(self, report_path: str) -> None:
        self.report_path = report_path

    def __enter__(self) -> CpuMeter:
        Path(self.report_path).write_text("")
        self.start = (resource.getrusage(resource.RUSAGE_SELF), _mariadb_cpu(), time.monotonic(), _machine_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        me, db, started, machine = self.start
        machine_now = _machine_cpu()
        self.machine = (machine_now - machine) if machine is not None and machine_now is not None else None
        now_me = resource.getrusage(resource.RUSAGE_SELF)
        self.simulators = now_me.ru_utime + now_me.ru_stime - me.ru_utime - me.ru_stime
        db_now = _mariadb_cpu()
        self.database = (db_now - db) if db is not None and db_now is not None else None
        self.wall = time.monotonic() - started
        self.reports = [json.loads(line) for line in Path(self.report_path).read_text().splitlines() if line]
        self.workers = sum(r["cpu"] for r in self.reports)

    def everything(self, n: int) -> float | None:
        """CPU seconds per message of everything the run used (None when MariaDB's share is unknown)."""
        if self.database is None:
            return None
        return (self.workers + self.simulators + self.database) / n

    def line(self, n: int, label: str = "dispatch") -> str:
        per = {label: self.workers, "simulators": self.simulators, "MariaDB": self.database}
        parts = [f"{name} {1000 * sec / n:5.2f}" for name, sec in per.items() if sec is not None]
        ours = sum(sec for sec in per.values() if sec is not None)
        line = f"  cpu ms/message: {', '.join(parts)}; {ours / self.wall:.2f} of {os.cpu_count()} cores busy"
        if self.machine is not None:  # the MariaDB server's share may include other clients' work
            line += f" (the whole machine: {self.machine / self.wall:.2f}; start-up and other processes included)"
        return line


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


# -- main ------------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sequential-n", type=int, default=300, help="sample size of the sequential run")
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("DISPATCH_CONCURRENCY", 64)))
    parser.add_argument("--delay", type=float, default=0.05, help="simulator answer delay, seconds")
    parser.add_argument("--profile", help="profile the 1-process dispatcher (pstats; all threads with yappi)")
    parser.add_argument("--runs", default="sequential,1,2,bare",
                        help="which runs (sequential, 1, 2, bare); the verdicts need all four")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return
    if args.bare:
        bare_main()
        return

    from flask_migrate import upgrade

    from app import create_app
    from sandbox.twilio.server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_FROM
    from sandbox.whatsapp.server import DEFAULT_PHONE_NUMBER_ID, DEFAULT_TOKEN
    from tests.providers import ChannelSimulators
    from tests.seeds import seed_due_messages

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
    scratch = tempfile.mkdtemp(prefix="recoup-bench-")
    report_path, wires_path = f"{scratch}/report.jsonl", f"{scratch}/wires.pickle"
    try:
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
            "RECOUP_BENCH_REPORT": report_path,
        }
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
                          **{k: v for k, v in base_env.items() if k.startswith(("SMTP_", "TWILIO_", "WHATSAPP_"))},
                          "PUBLIC_BASE_URL": base_env["RECOUP_PUBLIC_URL"]})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
        rates: dict[str, float] = {}
        meters: dict[str, CpuMeter] = {}
        runs = (("sequential", "--worker", 1, 1, min(args.sequential_n, args.n)),
                ("1 process", "--worker", 1, args.concurrency, args.n),
                ("2 processes", "--worker", 2, args.concurrency, args.n),
                ("bare send", "--bare", 1, args.concurrency, args.n))
        wanted = {{"1": "1 process", "2": "2 processes", "bare": "bare send"}.get(r, r) for r in args.runs.split(",")}
        for label, mode, processes, concurrency, n in runs:
            if label not in wanted:
                continue
            sims.reset()
            sims.twilio.send_status_callbacks = False  # see the docstring
            with app.app_context():
                empty_outbox()
                ids = seed_due_messages(n)
                if mode == "--bare":
                    with open(wires_path, "wb") as out:
                        pickle.dump(prerender(ids), out)
            env = {**base_env, "DISPATCH_CONCURRENCY": str(concurrency), "RECOUP_BENCH_WIRES": wires_path}
            if args.profile and label == "1 process":
                env["RECOUP_BENCH_PROFILE"] = args.profile
            started = time.monotonic()
            with CpuMeter(report_path) as cpu:
                run_workers(processes, env, mode)
            wall = time.monotonic() - started
            if mode == "--bare":
                [bare] = cpu.reports
                rate, sent = bare["n"] / max(bare["seconds"], 1e-3), bare["n"]
            else:
                with app.app_context():
                    rate, sent = measured_rate()
            counts = [sims.smtp.count(f"m{i}") + sims.twilio.count(f"m{i}") + sims.whatsapp.count(f"m{i}")
                      for i in ids]
            twice = sum(1 for c in counts if c > 1)
            missing = sum(1 for c in counts if c == 0)
            rates[label], meters[label] = rate, cpu
            print(f"{label:12} n={n:6}  concurrency={concurrency:3}  {rate:8.1f} msg/s  "
                  f"(wall {wall:5.1f} s incl. start-up)  sent={sent}  missing={missing}  twice={twice}", flush=True)
            print(cpu.line(n, "bare sender" if mode == "--bare" else "dispatch"), flush=True)
            if twice or missing:
                raise SystemExit(f"{label}: {twice} message(s) received twice, {missing} never")

        n = args.n
        if len(rates) < len(runs):
            return
        recoup = meters["1 process"].workers / n
        bare = meters["bare send"].workers / n
        ratio = recoup / (bare or 1e-9)
        print(f"\nCPU per message (process CPU time): Recoup's dispatcher {1000 * recoup:.2f} ms, bare send "
              f"{1000 * bare:.2f} ms: {ratio:.2f}x (target <= {TARGET_CPU_RATIO:g}x): "
              f"{verdict(ratio <= TARGET_CPU_RATIO)}")
        concurrent = rates["1 process"] / (rates["sequential"] or 1e-9)
        print(f"throughput, 1 process vs sequential: {concurrent:.1f}x (target >= {TARGET_CONCURRENT:g}x): "
              f"{verdict(concurrent >= TARGET_CONCURRENT)}")
        per = meters["2 processes"].everything(n)
        if per:
            # Everything shares this machine's cores: the dispatch processes, the simulators and MariaDB. However
            # many processes dispatch, the messages per second cannot exceed cores / CPU per message.
            ceiling = (os.cpu_count() or 1) / per
            share = rates["2 processes"] / ceiling
            print(f"2 processes vs this machine's ceiling: {rates['2 processes']:.0f} msg/s of {ceiling:.0f} "
                  f"({os.cpu_count()} cores / {1000 * per:.2f} ms of CPU per message for dispatch, simulators and "
                  f"MariaDB) = {share:.2f} (target >= {TARGET_CEILING:g}): {verdict(share >= TARGET_CEILING)}")
        else:
            print("2 processes vs this machine's ceiling: MariaDB's CPU cannot be read here (not a local mariadbd)")
    finally:
        sims.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


if __name__ == "__main__":
    main()
