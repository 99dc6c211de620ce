"""Issue 3's acceptance runs: 10,000 failed sales among 10,000 successful ones, refunds and settlements over 30
days; then the same with a fifth of the simulator's answers failing, fetched by a real RQ worker process."""

import os
import time

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.ingest.transactions import fetch_account
from app.models import Customer, FetchCursor, RecoveryCase, Transaction
from sandbox.nmi.server import NmiSimulator
from tests import backends
from tests.crash import run_worker_burst
from workers import jobs

N = int(os.environ.get("RECOUP_SCALE_N", "10000"))
CLIENT = {
    "timeout": [2.0, 1.5],
    "backoff": 0.01,
    "max_backoff": 0.1,
    "max_retry_after": 0.1,
    "page_size": 1000,
    "max_attempts": 3,
}


@pytest.fixture(scope="module")
def population():
    with NmiSimulator(seed=2026) as sim:
        sim.seed_population(failed=N, succeeded=N, days=29, seed=2026)  # inside the 30-day first fetch
        import requests

        listed = requests.get(
            f"{sim.url}/_control/transactions", params={"condition": "failed", "limit": 10 * N}, timeout=60
        ).json()
        yield sim, {str(t["transaction_id"]) for t in listed["items"]}


def account_for(db, sim, name="nmi-scale"):
    account = save_account(
        name,
        "nmi",
        api_url=f"{sim.url}/api",
        credentials={"security_key": sim.security_key},
        settings={"client": CLIENT},
    )
    db.session.commit()
    return account


@pytest.mark.slow
def test_one_fetch_ingests_exactly_the_failed_sales_each_once(db, backend, population):
    if backend != "mysql":
        pytest.skip("the scale run is on MariaDB")
    sim, expected = population
    sim.reset()
    account = account_for(db, sim)
    first = fetch_account(account.id)
    assert first.ok, first.error
    # the failed sales are the transactions with status failed; the same run also stores the approved sales and
    # refunds (status approved / refunded) as the customers' history, and never opens a case for them
    failed = sa.select(Transaction.gateway_transaction_id).where(Transaction.status == "failed")
    stored = list(db.session.scalars(failed))
    assert len(stored) == len(set(stored)) == len(expected) and set(stored) == expected
    assert first.sales.ok and first.sales.result.new_sales == N, first.sales.error
    second = fetch_account(account.id)
    assert second.ok and second.result.new_transactions == 0
    assert second.sales.ok and second.sales.result.new_sales == second.sales.result.new_refunds == 0
    assert len(list(db.session.scalars(failed))) == len(expected)
    assert db.session.scalar(
        sa.select(sa.func.count()).select_from(Customer).where(Customer.timezone.is_(None))
    ) < 0.05 * db.session.scalar(sa.select(sa.func.count()).select_from(Customer))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) > 0.8 * len(expected)


@pytest.mark.slow
@pytest.mark.redis
def test_with_a_fifth_of_calls_failing_repeated_worker_fetches_get_everything_once(
    db, backend, population, app, pytestconfig
):
    if backend != "mysql":
        pytest.skip("the fault run is on MariaDB")
    if not pytestconfig._recoup_redis:
        pytest.skip("Redis not available")
    from redis import Redis

    from app.queue import RQQueue

    sim, expected = population
    sim.reset()
    for kind, rate, seed in (
        ("http_429", 0.05, 1),
        ("http_500", 0.05, 2),
        ("timeout", 0.05, 3),
        ("truncated_xml", 0.05, 4),
    ):
        sim.inject(kind, rate=rate, seed=seed, path="query.php", seconds=2.0)
    account = account_for(db, sim, "nmi-faults")
    Redis.from_url(backends.REDIS_URL).flushdb()
    queue = RQQueue(backends.REDIS_URL)
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": backends.REDIS_URL,
        "SECRET_KEY": app.config["SECRET_KEY"],
    }
    runs = 0
    logs: list[str] = []
    deadline = time.time() + 300
    while time.time() < deadline:
        runs += 1
        queue.enqueue(jobs.fetch_account, account.id, queue="high")
        done = run_worker_burst(env, timeout=600)
        logs.append(done.stderr[-2000:])
        db.session.rollback()  # end our snapshot: MariaDB reads are REPEATABLE READ
        cursor = db.session.scalar(
            sa.select(FetchCursor).where(
                FetchCursor.gateway_account_id == account.id, FetchCursor.kind == "failed_sales"
            )
        )
        if cursor is not None and cursor.last_status == "ok":
            break
    assert cursor is not None and cursor.last_status == "ok", f"no fetch completed in {runs} runs: {logs[-1]}"
    stored = list(db.session.scalars(sa.select(Transaction.gateway_transaction_id)))
    assert len(stored) == len(set(stored)), "a transaction was stored twice"
    failed_ids = sa.select(Transaction.gateway_transaction_id).where(Transaction.status == "failed")
    failed = set(db.session.scalars(failed_ids))
    assert failed == expected, f"{len(expected - failed)} failed sales missing after {runs} runs"
    pages = N // CLIENT["page_size"] + 1
    assert len(sim.received("query.php")) > pages, "no request was retried: the faults were not in play"
    Redis.from_url(backends.REDIS_URL).flushdb()
