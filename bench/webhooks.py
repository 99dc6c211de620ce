"""Webhooks under load: the provider webhook endpoints served by gunicorn, driven by wrk on loopback for a bounded
time, against a trivial endpoint (``/healthz``) of the same server measured in the same run.

The requests are the providers' own: the simulators (Twilio, WhatsApp Cloud API, NMI) send their real, signed
status callbacks and event webhooks for real sends to a recorder listening where Recoup will listen; wrk then
replays each recorded request once against gunicorn, while an RQ worker (``flask worker``) applies what the
webhooks stored (app.inbox). The database is the judge: every webhook stored before its answer (the rate is
webhooks stored per second, from the replay's start to the last one stored), then every status recorded as an
event of its message and every NMI failure ingested once (a case each), however long the worker takes.

Then the same requests are replayed against a bare intake (bench/bare_intake.py: the same gunicorn settings, no
Flask, no checks, the body stored by the inbox's own group-committed INSERT): the least any webhook endpoint can
cost while its answer means "stored", so the ceiling of the ratio on this machine.

Prints requests/s for the webhooks, for ``/healthz`` and for the bare intake, and the ratios (target: the webhooks
at least 0.5 of ``/healthz``), p50/p99 latency, the rate at which the worker applied them, non-2xx answers and lost
events (target: 0 and 0).

    .venv/bin/python bench/webhooks.py [--messages 1500] [--nmi 1000] [--workers N] [--threads N]
                                       [--connections 32] [--seconds 120] [--worker-nice 0] [--apply-after]

gunicorn runs as a deployment does, with gunicorn.conf.py (gthread workers; workers and threads from it unless
given).

Needs ``wrk`` (Debian: apt-get install wrk) and MariaDB (``RECOUP_BENCH_MYSQL_URL``, a server URL, default
``mysql+pymysql://root:@127.0.0.1:3306``; a database of its own is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

TARGET_RATIO = 0.5
STATUS_KINDS = ("sent", "delivered", "read", "failed", "undelivered", "queued", "accepted", "sending")
KEEP_HEADERS = ("content-type", "x-twilio-signature", "x-hub-signature-256", "webhook-signature")


# -- recording what the providers send ---------------------------------------------------------------------------------
class Recorder:
    """A server on ``port`` that answers every webhook 200 and keeps it (path with query, headers, body)."""

    def __init__(self, port: int) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

        @Request.application
        def app(request: Request) -> Response:
            with self._lock:
                self.requests.append({
                    "path": request.full_path.rstrip("?"),
                    "headers": {k: v for k, v in request.headers.items() if k.lower() in KEEP_HEADERS},
                    "body": request.get_data(),
                })
            return Response("", 200)

        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua_string(data: bytes) -> str:
    """A Lua long string holding ``data`` exactly (a level no ``]=...=]`` in it closes)."""
    text = data.decode("latin-1")
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[\n{text}]{eq}]"  # a newline right after the opening bracket is dropped by Lua


def write_lua(requests: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="latin-1") as out:
        out.write("return {\n")
        for r in requests:
            headers = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in r["headers"].items())
            out.write(f"{{path = {json.dumps(r['path'])}, headers = {{{headers}}}, body = {lua_string(r['body'])}}},\n")
        out.write("}\n")


def statuses_in(recorded: dict[str, Any]) -> int:
    """How many delivery statuses one recorded request carries (a WhatsApp webhook may batch several)."""
    if recorded["path"].startswith("/hooks/twilio/status"):
        return 1
    if recorded["path"].startswith("/hooks/whatsapp"):
        payload = json.loads(recorded["body"])
        return sum(len(change.get("value", {}).get("statuses", []))
                   for entry in payload.get("entry", []) for change in entry.get("changes", []))
    return 0


# -- the run -----------------------------------------------------------------------------------------------------------
def wrk(url: str, *, threads: int, connections: int, seconds: int, script: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=seconds + 120)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return done.stdout


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, and of reaped children: an RQ worker's work-horses) of ``pids`` so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(gunicorn_pid: int) -> dict[str, list[int]]:
    """gunicorn's workers, and MariaDB's server process when it runs on this machine."""
    from tests.crash import descendants

    found = subprocess.run(["pgrep", "-x", "mariadbd|mysqld"], capture_output=True, text=True).stdout.split()
    return {"gunicorn": descendants(gunicorn_pid), "mariadb": [int(p) for p in found]}


def requests_per_second(output: str) -> float:
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return float(found.group(1)) if found else 0.0


def latency_ms(output: str, percentile: str) -> float:
    found = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    if not found:
        return 0.0
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def replay(public: str, scratch: Path, connections: int, seconds: int, stored: Any,
           expected: int) -> tuple[subprocess.Popen[str], float, float | None]:
    """wrk replaying the recorded requests (scratch/requests.lua) once each against ``public``, until ``stored()``
    counts ``expected`` (or wrk's time is up): (wrk, when it began, when the last was stored or None)."""
    started = time.monotonic()
    load = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s",
         "-s", str(ROOT / "bench" / "wrk" / "replay.lua"), public],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RECOUP_WRK_DATA": str(scratch / "requests.lua"), "RECOUP_WRK_THREADS": "2"},
    )
    while load.poll() is None:
        if stored() >= expected:
            return load, started, time.monotonic()
        time.sleep(0.05)
    return load, started, None


def replay_result(output: str) -> dict[str, str]:
    """What bench/wrk/replay.lua's last line says (answered, non2xx, p50_ms, ...)."""
    return dict(re.findall(r"(\w+)=([\d.]+)", output.split("RESULT", 1)[1])) if "RESULT" in output else {}


def stop_replay(load: subprocess.Popen[str]) -> str:
    """wrk stopped once the last answers are back: what it printed."""
    time.sleep(0.5)  # the last answers on their way back to wrk
    load.send_signal(signal.SIGINT)
    return load.communicate(timeout=60)[0]


def wait_for(url: str, status: int, workers: int) -> None:
    """Until every gunicorn worker has booted: a run of ``status`` answers from ``url`` in a row."""
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if all(requests.get(url, timeout=5).status_code == status for _ in range(4 * workers)):
                return
        except requests.RequestException:
            time.sleep(0.5)
    raise SystemExit(f"gunicorn did not answer {url} within two minutes")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1500, help="SMS and WhatsApp messages whose statuses replay")
    parser.add_argument("--nmi", type=int, default=1000, help="NMI failure webhooks")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per gunicorn worker (default: gunicorn.conf.py's)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--worker-nice", type=int, default=0,
                        help="the RQ worker's niceness (0: as the web processes)")
    parser.add_argument("--seconds", type=int, default=120, help="the most the webhook replay may take")
    parser.add_argument("--apply-after", action="store_true",
                        help="start the worker once every webhook is stored: the web processes' rate on their own")
    args = parser.parse_args()
    import runpy

    deployed = runpy.run_path(str(ROOT / "gunicorn.conf.py"))  # the settings a deployment runs with
    args.workers = args.workers or deployed["workers"]
    args.threads = args.threads or deployed["threads"]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from flask_migrate import upgrade

    from app import create_app, inbox
    from app.extensions import db
    from app.models import GatewayAccount, InboundEvent, MessageEvent, RecoveryCase
    from app.outbox import whatsapp_users
    from app.outbox.run import dispatch_due
    from bench import bare_intake
    from sandbox.nmi.server import NmiSimulator
    from tests.providers import ChannelSimulators
    from tests.seeds import seed_due_messages

    server = os.environ.get("RECOUP_BENCH_MYSQL_URL", "mysql+pymysql://root:@127.0.0.1:3306").rstrip("/")
    name = f"recoup_bench_hooks_{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    url = f"{server}/{name}?charset=utf8mb4"
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    sims = ChannelSimulators()
    sims.start()
    nmi = NmiSimulator()
    scratch = Path(tempfile.mkdtemp(prefix="recoup-bench-hooks-"))
    gunicorn: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        secret = "bench-" + os.urandom(8).hex()
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": secret, "CONSOLIDATE_WINDOW_HOURS": 0,
                          "NMI_SECURITY_KEY": nmi.security_key, "NMI_WEBHOOK_SIGNING_KEY": nmi.webhook_signing_key,
                          "NMI_API_URL": "http://127.0.0.1:9/api"})
        sims.configure(app, public_url=public)
        sims.whatsapp.webhook_url = f"{public}/hooks/whatsapp"
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            seed_due_messages(args.messages, channels=("sms", "whatsapp"))
            # the seeds' own gateway account has no credentials: not one an NMI webhook could be signed for
            db.session.execute(sa.update(GatewayAccount).where(GatewayAccount.name.like("bench-%")).values(enabled=False))
            db.session.commit()
            with Recorder(port) as recorder:
                while True:  # dispatch until nothing is due: the simulators call the recorder back
                    report = dispatch_due()
                    if not report.get("claimed"):
                        break
                sims.twilio.wait_for_callbacks(60)
                sims.whatsapp.wait_for_webhooks(60)
                for _ in range(args.nmi):
                    nmi.send_webhook("transaction.sale.failure", nmi.add_transaction(), url=f"{public}/hooks/nmi")
                time.sleep(1)
                recorded = list(recorder.requests)
            db.session.remove()
        if os.environ.get("RECOUP_BENCH_DEBUG"):
            from collections import Counter

            print(Counter(r["path"].split("?")[0] for r in recorded))
        statuses = sum(statuses_in(r) for r in recorded)
        nmi_hooks = sum(1 for r in recorded if r["path"].startswith("/hooks/nmi"))
        write_lua(recorded, scratch / "requests.lua")
        if os.environ.get("RECOUP_BENCH_DEBUG"):  # the requests, for a profile of one endpoint in a process of its own
            import base64

            (scratch / "requests.json").write_text(json.dumps(
                [{**r, "body": base64.b64encode(r["body"]).decode()} for r in recorded]))
        if os.environ.get("RECOUP_BENCH_PROFILE"):  # where a webhook's time goes, in this process
            import cProfile
            import pstats

            redis_url = os.environ.get("RECOUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
            client = create_app({**app.config, "REDIS_URL": redis_url}).test_client()  # the answers only
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.enable()
            for r in recorded:
                client.post(r["path"], data=r["body"], headers=r["headers"], base_url=public)
            profiler.disable()
            profiler.dump_stats(os.environ["RECOUP_BENCH_PROFILE"])
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
            return 0

        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": secret, "RECOUP_PUBLIC_URL": public,
               "TWILIO_AUTH_TOKEN": app.config["TWILIO_AUTH_TOKEN"],
               "TWILIO_ACCOUNT_SID": app.config["TWILIO_ACCOUNT_SID"],
               "WHATSAPP_APP_SECRET": app.config["WHATSAPP_APP_SECRET"], "NMI_SECURITY_KEY": nmi.security_key,
               "NMI_WEBHOOK_SIGNING_KEY": nmi.webhook_signing_key, "NMI_API_URL": "http://127.0.0.1:9/api",
               "REDIS_URL": os.environ.get("RECOUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
               "CONSOLIDATE_WINDOW_HOURS": "0"}
        from redis import Redis

        Redis.from_url(env["REDIS_URL"]).flushdb()  # the bench's own database: no jobs or marks of an earlier run
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"), "--workers",
             str(args.workers), "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=(scratch / "gunicorn.log").open("wb"), stderr=subprocess.STDOUT,
        )
        wait_for(f"{public}/healthz", 200, args.workers)
        wrk(f"{public}/healthz", threads=2, connections=args.connections, seconds=3)  # warm every worker
        pids = server_pids(gunicorn.pid)
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        trivial = wrk(f"{public}/healthz", threads=2, connections=args.connections, seconds=10)
        trivial_cpu = {name: cpu_seconds(p) - cpu_before[name] for name, p in pids.items()}
        if "Requests/sec" not in trivial or "Non-2xx" in trivial:
            raise SystemExit(f"/healthz did not answer as it should:\n{trivial}")
        with app.app_context():
            before = db.session.scalar(sa.select(sa.func.max(MessageEvent.id))) or 0
            cases_before = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) or 0
            db.session.remove()

        def effects() -> tuple[int, int, int]:
            """(status events, NMI failures applied, cases opened) recorded since the replay began."""
            with app.app_context():
                try:
                    return (
                        db.session.scalar(sa.select(sa.func.count()).select_from(MessageEvent).where(
                            MessageEvent.id > before, MessageEvent.kind.in_(STATUS_KINDS))) or 0,
                        db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)
                                          .where(InboundEvent.provider == "nmi",
                                                 InboundEvent.processed_at.is_not(None))) or 0,
                        (db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) or 0) - cases_before,
                    )
                finally:
                    db.session.remove()

        def stored() -> int:
            """Webhooks stored (and so answered, or about to be) since the replay began."""
            with app.app_context():
                try:
                    return db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent).where(
                        InboundEvent.provider.in_(inbox.PROVIDERS),
                        InboundEvent.event_type != whatsapp_users.EVENT_TYPE)) or 0
                finally:
                    db.session.remove()

        def start_worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(["nice", "-n", str(args.worker_nice), sys.executable, "-m", "flask", "--app",
                                     "wsgi", "worker"], cwd=ROOT, env=env,
                                    stdout=(scratch / "worker.log").open("wb"), stderr=subprocess.STDOUT)

        def worker_cpu() -> float:
            """The worker's CPU so far, its work-horses' included (running or reaped)."""
            from tests.crash import descendants

            assert worker is not None
            return cpu_seconds([worker.pid, *descendants(worker.pid)])

        worker = None if args.apply_after else start_worker()
        cpu_before = {name: cpu_seconds(p) for name, p in pids.items()}
        worker_before = worker_cpu() if worker is not None else 0.0
        load, replay_started, finished_at = replay(public, scratch, args.connections, args.seconds, stored,
                                                   len(recorded))
        hooks_cpu = {name: cpu_seconds(p) - cpu_before[name] for name, p in pids.items()}
        worker_during = worker_cpu() - worker_before if worker is not None else 0.0
        if worker is None:  # --apply-after: the webhooks wait in the inbox (the dispatch sweep, or this worker)
            worker = start_worker()
        hooks = stop_replay(load)
        drain_deadline = time.monotonic() + args.seconds
        while time.monotonic() < drain_deadline:
            events, inbound, _ = effects()
            if events >= statuses and inbound >= nmi_hooks:
                applied_at = time.monotonic()
                break
            time.sleep(0.2)
        worker_total = worker_cpu() - worker_before
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        events, inbound, cases = effects()
        stop_server(gunicorn)  # its CPU is the baseline's now
        gunicorn = None

        # the baseline: the same replay against the least a stored webhook can cost (bench/bare_intake.py)
        bare_port = free_port()
        bare_server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:bench.bare_intake", "--workers", str(args.workers),
             "--threads", str(args.threads), "--bind", f"127.0.0.1:{bare_port}", "--log-level", "warning",
             "bench.bare_intake:app"],
            cwd=ROOT, env=env, stdout=(scratch / "bare.log").open("wb"), stderr=subprocess.STDOUT,
        )
        try:
            wait_for(f"http://127.0.0.1:{bare_port}/", 404, args.workers)
            bare_pids = server_pids(bare_server.pid)

            def bare_stored() -> int:
                with app.app_context():
                    try:
                        return db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent).where(
                            InboundEvent.event_type == bare_intake.EVENT_TYPE)) or 0
                    finally:
                        db.session.remove()

            cpu_before = {name: cpu_seconds(p) for name, p in bare_pids.items()}
            load, bare_started, bare_finished = replay(f"http://127.0.0.1:{bare_port}", scratch, args.connections,
                                                       args.seconds, bare_stored, len(recorded))
            bare_cpu = {name: cpu_seconds(p) - cpu_before[name] for name, p in bare_pids.items()}
            bare_out = stop_replay(load)
        finally:
            stop_server(bare_server)
        bare_result = replay_result(bare_out)
        bare_rate = int(bare_result.get("answered", 0)) / ((bare_finished or time.monotonic()) - bare_started)
        if os.environ.get("RECOUP_BENCH_DEBUG"):
            print(trivial, hooks, (scratch / "gunicorn.log").read_text(errors="replace")[-5000:], sep="\n")
        result = replay_result(hooks)
        answered, non2xx = int(result.get("answered", 0)), int(result.get("non2xx", 0))
        # from the replay's start to the moment the database held every webhook (polled every 0.05 s)
        seconds = (finished_at or time.monotonic()) - replay_started
        hooks_rate = answered / seconds
        applied_seconds = (applied_at or time.monotonic()) - replay_started
        trivial_rate = requests_per_second(trivial)
        ratio = hooks_rate / (trivial_rate or 1e-9)
        lost_status, lost_nmi = statuses - int(events or 0), nmi_hooks - int(inbound or 0)
        print(f"recorded: {len(recorded)} webhook requests ({statuses} delivery statuses in "
              f"{len(recorded) - nmi_hooks} Twilio/WhatsApp requests, {nmi_hooks} NMI failures); gunicorn "
              f"(gunicorn.conf.py: {deployed['worker_class']}) {args.workers} workers x {args.threads} threads, "
              f"wrk 2 threads x {args.connections} connections, one RQ worker"
              f"{' started once every webhook was stored' if args.apply_after else ''}; {os.cpu_count()} CPUs")
        print(f"/healthz     {trivial_rate:9.1f} req/s   p50 {latency_ms(trivial, '50'):6.2f} ms   "
              f"p99 {latency_ms(trivial, '99'):6.2f} ms")
        print(f"webhooks     {hooks_rate:9.1f} req/s   p50 {float(result.get('p50_ms', 0)):6.2f} ms   "
              f"p99 {float(result.get('p99_ms', 0)):6.2f} ms   ({answered} answered in {seconds:.1f} s)")
        print(f"bare intake  {bare_rate:9.1f} req/s   p50 {float(bare_result.get('p50_ms', 0)):6.2f} ms   "
              f"p99 {float(bare_result.get('p99_ms', 0)):6.2f} ms   (bench/bare_intake.py: body stored, nothing else; "
              f"{int(bare_result.get('non2xx', 0))} non-2xx)")
        print(f"applied      {len(recorded) / applied_seconds:9.1f} webhooks/s by one worker, alongside "
              f"({'all' if applied_at else 'NOT all'} applied {applied_seconds:.1f} s after the replay began)")
        trivial_n = trivial_rate * 10
        print("CPU per request: " + "; ".join(
            f"{name} {1000 * trivial_cpu[name] / max(trivial_n, 1):.2f} ms /healthz, "
            f"{1000 * hooks_cpu[name] / max(len(recorded), 1):.2f} ms webhook" for name in pids)
            + f"; worker {1000 * worker_total / max(len(recorded), 1):.2f} ms webhook applied "
              f"({1000 * worker_during / max(len(recorded), 1):.2f} of it while the webhooks came in); bare intake "
              + ", ".join(f"{name} {1000 * bare_cpu[name] / max(len(recorded), 1):.2f} ms" for name in bare_pids))
        print(f"non-2xx answers: {non2xx}; lost: {lost_status} status event(s), {lost_nmi} NMI failure(s) "
              f"({inbound} NMI failures applied, {cases} cases)")
        ok_rate, ok_errors = ratio >= TARGET_RATIO, not non2xx and answered == len(recorded)
        ok_lost = lost_status == 0 and lost_nmi == 0 and cases == nmi_hooks
        print(f"\nwebhooks vs /healthz: {ratio:.2f} (target >= {TARGET_RATIO:g}): "
              f"{'meets the target' if ok_rate else 'MISSES the target'}")
        print(f"bare intake vs /healthz: {bare_rate / (trivial_rate or 1e-9):.2f} (the most any webhook endpoint "
              f"storing before its answer could reach on this stack); webhooks vs bare intake: "
              f"{hooks_rate / (bare_rate or 1e-9):.2f}")
        print(f"errors and losses: {'none' if ok_errors and ok_lost else 'SOME'}")
        if not (ok_errors and ok_lost):
            print((scratch / "gunicorn.log").read_text(errors="replace")[-3000:])
            print((scratch / "worker.log").read_text(errors="replace")[-3000:])
        return 0 if ok_rate and ok_errors and ok_lost else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        if gunicorn is not None:
            stop_server(gunicorn)
        sims.stop()
        if os.environ.get("RECOUP_BENCH_DEBUG"):
            print(f"logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


if __name__ == "__main__":
    raise SystemExit(main())
