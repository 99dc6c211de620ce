"""Soak: the dispatch crash round, many times. Each round seeds N due messages (email, SMS, WhatsApp in turn, every
tenth a payment's receipt) in a fresh MariaDB database, dispatches them with a real RQ worker process on Redis,
SIGKILLs the worker (and the work-horse sending right now) several times while sending, restarts it, waits until
everything settled, and asks the simulators how many copies of each message they received.

Per round and in total, per channel: duplicates (received more than once: must be 0), lost (not held for a person
and not received exactly once: must be 0), and rows held for review (a provider that cannot be asked: an email past
its end-of-DATA checkpoint, a WhatsApp Meta never reported on), with how many of those had in fact arrived.

    .venv/bin/python bench/soak.py [--rounds 20] [--n 2000] [--kills 5] [--concurrency 32]

MariaDB: ``RECOUP_BENCH_MYSQL_URL`` (a server URL, default ``mysql+pymysql://root:@127.0.0.1:3306``); Redis:
``RECOUP_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/7``). Exit status 1 on any duplicate, loss or round
that did not settle.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402


def one_round(server: str, redis_url: str, args: argparse.Namespace, number: int):  # type: ignore[no-untyped-def]
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from tests.crash import crash_round

    name = f"recoup_soak_{os.getpid()}_{number}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        url = f"{server}/{name}?charset=utf8mb4"
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
                          "SECRET_KEY": "soak-" + os.urandom(8).hex()})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            with tempfile.TemporaryDirectory(prefix="recoup-soak-") as work:
                run = crash_round(app, db, n=args.n, redis_url=redis_url, work_dir=Path(work), kills=args.kills,
                                  concurrency=args.concurrency, deadline_seconds=args.deadline)
            db.session.remove()
            db.engine.dispose()
        return run
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--n", type=int, default=2000, help="messages per round")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=480, help="seconds a round may take to settle")
    args = parser.parse_args()
    server = os.environ.get("RECOUP_BENCH_MYSQL_URL", "mysql+pymysql://root:@127.0.0.1:3306").rstrip("/")
    redis_url = os.environ.get("RECOUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    totals: dict[str, Counter[str]] = {}
    failed_rounds = 0
    for number in range(1, args.rounds + 1):
        run = one_round(server, redis_url, args, number)
        unsettled = run.n - run.settled
        kills = len(run.kills)
        per = run.by_channel()
        for channel, row in per.items():
            totals.setdefault(channel, Counter()).update(row)
        # a round counts when a worker died mid-send at least once (a small round may settle before every kill)
        bad = bool(run.twice() or run.lost() or unsettled or kills < 1)
        failed_rounds += bad
        summary = "  ".join(f"{ch}: dup {r['duplicates']} lost {r['lost']} review {r['review']}"
                            for ch, r in sorted(per.items()))
        print(f"round {number:2}/{args.rounds}: {run.n} messages, {kills} kills, {run.seconds:5.1f} s, "
              f"unsettled {unsettled}  |  {summary}{'  <- FAILED' if bad else ''}", flush=True)
        if bad and run.trouble:
            print(run.trouble[-3000:], flush=True)
        if bad and run.log_tail:
            print(run.log_tail[-1500:], flush=True)

    print(f"\n{args.rounds} rounds x {args.n} messages, {args.kills} SIGKILLs each:")
    print(f"{'channel':10} {'messages':>9} {'duplicates':>11} {'lost':>6} {'review':>7} {'review, arrived':>16}")
    for channel, row in sorted(totals.items()):
        print(f"{channel:10} {row['messages']:9} {row['duplicates']:11} {row['lost']:6} {row['review']:7} "
              f"{row['review_arrived']:16}")
    duplicates = sum(r["duplicates"] for r in totals.values())
    lost = sum(r["lost"] for r in totals.values())
    verdict = "PASS" if not (duplicates or lost or failed_rounds) else "FAIL"
    print(f"\n{verdict}: {duplicates} duplicate(s), {lost} lost, {failed_rounds} failed round(s)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
