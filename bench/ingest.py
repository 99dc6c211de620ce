"""Ingest benchmark: 100,000 failed transactions from the NMI simulator into MariaDB.

Two runs over the same simulator population, in the same process and database server:

- baseline: the same NMI client streams the same query pages, and the same transaction rows (ids, amounts,
  decline code and text, order, times and the raw record as JSON, as Recoup stores them) go straight into a table
  of the same shape (``CREATE TABLE ... LIKE transactions``) with one ``executemany`` per 1,000 rows: fetching and
  parsing plus the cheapest possible insert of what is stored;
- recoup: ``app.ingest.transactions.fetch_account``: customers upserted, timezones detected, declines classified,
value bands
  and product types, transactions, one case per failed payment, the cursor.

The baseline runs before and after Recoup and the faster of the two counts, so a machine that gets busier or
quieter during the run cannot flatter the ratio. Prints the rates and their ratio (target: Recoup at least 40% of
the baseline), and the peak Python memory of an ingest whose single query page holds 10,000 records next to one
whose page holds 100,000 (target: flat, because the XML is streamed and rows are committed in chunks).

The simulator runs in its own process so that its memory does not count. Needs MariaDB (RECOUP_BENCH_MYSQL_URL or
the local default).

    .venv/bin/python bench/ingest.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

SERVER = os.environ.get("RECOUP_BENCH_MYSQL_URL", "mysql+pymysql://root:@127.0.0.1:3306")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(n: int) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    code = (
        "import sys, time\n"
        "from sandbox.nmi.server import NmiSimulator\n"
        f"sim = NmiSimulator(port={port}, seed=99)\n"
        f"sim.seed_population(failed={n}, succeeded=0, days=29, seed=99, retry_share=0.0)\n"
        "import logging; logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
        "sim.start(); print(sim.security_key, flush=True)\n"
        "time.sleep(3600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    key = proc.stdout.readline().strip()
    if not key:
        raise SystemExit("the NMI simulator did not start")
    return proc, f"http://127.0.0.1:{port}/api", key


def make_database() -> tuple[str, sa.Engine]:
    name = f"recoup_bench_{secrets.token_hex(3)}"
    admin = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    return f"{SERVER}/{name}?charset=utf8mb4", admin


def baseline(api_url: str, key: str, url: str, page_size: int, table: str = "baseline_tx") -> tuple[int, float]:
    """The same fetch, and the same transaction rows into a table of the same shape (``LIKE transactions``:
    same columns and indexes), one ``executemany`` per 1,000 rows."""
    from app.gateways.nmi import NmiGateway
    from app.models.types import utcnow

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} LIKE transactions"))
    gateway = NmiGateway(security_key=key, api_url=api_url, page_size=page_size, timeout=(5.0, 120.0))
    now = utcnow()
    start = time.perf_counter()
    rows = 0
    raw = engine.raw_connection()
    cursor = raw.cursor()
    sql = (f"INSERT INTO {table} (gateway, gateway_account_id, gateway_transaction_id, status, amount_minor, "
           "currency, decline_code, decline_text, order_id, order_description, card_masked, failed_at, modified_at, "
           "raw, created_at) VALUES (%s, 1, %s, 'failed', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    batch: list[tuple[object, ...]] = []

    def flush() -> None:
        nonlocal rows
        cursor.executemany(sql, batch)
        raw.commit()
        rows += len(batch)
        batch.clear()

    for page in gateway.fetch_failed(now.replace(year=now.year - 1), now):
        for r in page.records:
            batch.append((r.gateway, r.gateway_transaction_id, r.amount_minor, r.currency, r.decline_code,
                          r.decline_text, r.order_id, r.order_description, r.customer.card_masked,
                          r.failed_at.replace(tzinfo=None), r.modified_at.replace(tzinfo=None),
                          json.dumps(dict(r.raw), default=str, ensure_ascii=False), now.replace(tzinfo=None)))
            if len(batch) == 1000:
                flush()
    if batch:
        flush()
    elapsed = time.perf_counter() - start
    raw.close()
    engine.dispose()
    return rows, elapsed


def migrate(url: str) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from config import Config

    app = create_app(Config, SQLALCHEMY_DATABASE_URI=url, REDIS_URL=None, SECRET_KEY="bench")
    with app.app_context():
        upgrade()


def recoup(api_url: str, key: str, url: str, page_size: int, *, trace: bool) -> tuple[int, float, int]:
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.gateway_accounts import save_account
    from app.extensions import db
    from app.ingest.transactions import fetch_account
    from config import Config

    app = create_app(Config, SQLALCHEMY_DATABASE_URI=url, REDIS_URL=None, SECRET_KEY="bench")
    with app.app_context():
        upgrade()
        account = save_account(
            f"nmi-bench-{page_size}",
            "nmi",
            api_url=api_url,
            credentials={"security_key": key},
            settings={"client": {"page_size": page_size, "timeout": [5.0, 120.0]}},
        )
        db.session.commit()
        if trace:  # tracing slows allocation-heavy code: the timed run is untraced, memory is measured apart
            tracemalloc.start()
        start = time.perf_counter()
        report = fetch_account(account.id)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
        if not report.ok:
            raise SystemExit(f"recoup ingest failed: {report.error}")
        return report.result.new_transactions, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    n = args.n
    small = max(1, n // 10)
    print(f"seeding the NMI simulator with {n:,} failed sales (own process)...", flush=True)
    sim, api_url, key = start_simulator(n)
    databases = []
    peaks: dict[int, int] = {}
    try:
        url, admin = make_database()
        databases.append((url, admin))
        migrate(url)
        rows, before_s = baseline(api_url, key, url, page_size=n)
        got, ours_s, _ = recoup(api_url, key, url, page_size=n, trace=False)
        rows_after, after_s = baseline(api_url, key, url, page_size=n, table="baseline_tx_after")
        for pages in (n, small):
            url_m, admin_m = make_database()
            databases.append((url_m, admin_m))
            peaks[pages] = recoup(api_url, key, url_m, page_size=pages, trace=True)[2]
        peak_big, peak_small = peaks[n], peaks[small]
    finally:
        sim.terminate()
        for url, admin in databases:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{url.rsplit('/', 1)[1].split('?')[0]}`"))
    assert rows == rows_after == n and got == n, (rows, rows_after, got, n)
    base_s = min(before_s, after_s)
    base_rate, ours_rate = rows / base_s, got / ours_s
    ratio = ours_rate / base_rate
    print(f"baseline (same fetch, same rows, executemany):      {base_rate:10,.0f} rows/s  ({base_s:.1f} s; "
          f"{before_s:.1f} s before Recoup, {after_s:.1f} s after: the faster counts)")
    print(f"recoup ingest (customers, timezones, cases, ...):   {ours_rate:10,.0f} rows/s  ({ours_s:.1f} s)")
    print(f"ratio: {ratio:.0%} of the baseline (target: at least 40%)  {'met' if ratio >= 0.4 else 'MISSED'}")
    growth = peak_big / peak_small
    print(
        f"peak Python memory: {peak_small / 2**20:.1f} MiB with {small:,}-record pages, "
        f"{peak_big / 2**20:.1f} MiB with one {n:,}-record page ({growth:.2f}x for 10x the page)"
    )
    flat = growth < 1.5
    print(f"memory {'stays flat' if flat else 'GROWS with the page'}")
    if ratio < 0.4 or not flat:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
