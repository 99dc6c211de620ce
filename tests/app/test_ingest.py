"""Fetching failed sales from the NMI simulator into customers, transactions and one case per failed payment."""

from collections import Counter

import pytest
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.ingest.transactions import fetch_account
from app.models import Customer, FetchCursor, RecoveryCase, Transaction

SIGNING_KEY = "whsec-ingest-tests"
NMI_SEED = 11  # this module's NMI simulator (tests/app/conftest.py)
NMI_SIGNING_KEY = SIGNING_KEY
CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05, "page_size": 200}


def nmi_account(db, sim, **client):
    account = save_account(
        "nmi-test",
        "nmi",
        api_url=f"{sim.url}/api",
        credentials={"security_key": sim.security_key, "webhook_signing_key": SIGNING_KEY},
        settings={"client": {**CLIENT, **client}},
    )
    db.session.commit()
    return account


def test_one_fetch_ingests_each_failed_sale_once_and_a_second_adds_nothing(db, sim):
    # inside the 30-day first fetch, however slow the run
    sim.seed_population(failed=300, succeeded=300, days=29, seed=5)
    expected = sim_failed_ids(sim)
    account = nmi_account(db, sim)
    first = fetch_account(account.id)
    assert first.ok, first.error
    failed = sa.select(Transaction.gateway_transaction_id).where(Transaction.status == "failed")
    stored = set(db.session.scalars(failed))
    assert stored == expected
    assert first.result.new_transactions == len(expected)
    again = fetch_account(account.id)
    assert again.ok and again.result.new_transactions == 0 and again.result.new_cases == 0
    assert len(list(db.session.scalars(failed))) == len(expected)
    # one case per failed payment, not per retry of the same order
    orders = Counter(db.session.scalars(sa.select(Transaction.order_id).where(Transaction.status == "failed")))
    cases = db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase))
    assert cases == len(orders)
    customers = db.session.scalars(sa.select(Customer)).all()
    with_phone = [c for c in customers if c.phone_e164]
    assert with_phone and all(c.phone_e164.startswith("+") for c in with_phone)
    assert all(c.timezone_source for c in customers)
    assert sum(1 for c in customers if c.timezone) >= 0.9 * len(customers)
    reasons = Counter(db.session.scalars(sa.select(Transaction.decline_reason).where(Transaction.status == "failed")))
    assert "insufficient_funds" in reasons and reasons.get("unknown", 0) < 0.05 * len(expected)
    cursor = db.session.scalar(sa.select(FetchCursor).where(FetchCursor.kind == "failed_sales"))
    assert cursor.position is not None and cursor.last_status == "ok"


def sim_failed_ids(sim):
    return {str(t["transaction_id"]) for t in sim_transactions(sim) if t["condition"] == "failed"}


def sim_transactions(sim):
    import requests

    listed = requests.get(
        f"{sim.url}/_control/transactions", params={"condition": "failed", "limit": 100000}, timeout=30
    ).json()
    assert listed["total"] == len(listed["items"])
    return listed["items"]


def test_a_bad_key_keeps_the_cursor_and_stores_nothing(db, sim):
    sim.seed_population(failed=20, succeeded=0, days=2, seed=3)
    account = save_account(
        "nmi-bad", "nmi", api_url=f"{sim.url}/api", credentials={"security_key": "wrong"}, settings={"client": CLIENT}
    )
    db.session.commit()
    report = fetch_account(account.id)
    assert not report.ok and "GatewayAuthError" in report.error
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 0
    cursor = db.session.scalar(sa.select(FetchCursor).where(FetchCursor.kind == "failed_sales"))
    assert cursor.position is None and cursor.last_status == "error"
    # the sales are not fetched when the failed sales did not complete: no second round of the same error
    assert report.sales.skipped
    assert db.session.scalar(sa.select(FetchCursor.position).where(FetchCursor.kind == "sales")) is None


def test_truncated_xml_keeps_the_cursor_until_a_later_fetch_completes(db, sim):
    sim.seed_population(failed=120, succeeded=0, days=3, seed=9)
    expected = sim_failed_ids(sim)
    account = nmi_account(db, sim, max_attempts=1)
    sim.inject("truncated_xml", count=1, path="query.php")
    broken = fetch_account(account.id)
    assert not broken.ok
    assert db.session.scalar(sa.select(FetchCursor.position).where(FetchCursor.kind == "failed_sales")) is None
    healed = fetch_account(account.id)
    assert healed.ok
    assert set(db.session.scalars(sa.select(Transaction.gateway_transaction_id))) == expected


def test_fetch_command_prints_what_it_found(db, sim, runner):
    sim.seed_population(failed=15, succeeded=5, days=2, seed=4)
    nmi_account(db, sim)
    result = runner.invoke(args=["fetch", "--gateway", "nmi-test"])
    assert result.exit_code == 0, result.output
    assert "nmi-test:" in result.output and "new" in result.output
    missing = runner.invoke(args=["fetch", "--gateway", "nope"])
    assert missing.exit_code != 0 and "no gateway account" in missing.output


def test_a_fetch_lock_is_per_database_on_a_shared_mariadb_server(app, db, backend):
    """GET_LOCK names are global to the server: another Recoup database on it (staging, a benchmark, another test
    run) holding its own account 1's lock must not make this one's fetch report "another fetch is running"."""
    if backend != "mysql":
        pytest.skip("GET_LOCK is MariaDB's")
    from app.ingest.transactions import FetchBusy, fetch_lock, fetch_lock_name

    other = db.engine.connect()
    try:
        assert other.execute(sa.text("SELECT GET_LOCK(:n, 0)"),
                             {"n": fetch_lock_name("some_other_recoup", 1)}).scalar() == 1
        with fetch_lock(1):  # not blocked by the other database's lock
            pass
        assert other.execute(sa.text("SELECT GET_LOCK(:n, 0)"),
                             {"n": fetch_lock_name(db.engine.url.database, 1)}).scalar() == 1
        with pytest.raises(FetchBusy), fetch_lock(1):  # this database's own lock still holds
            pass
    finally:
        other.execute(sa.text("SELECT RELEASE_ALL_LOCKS()"))
        other.close()
    assert len(fetch_lock_name("x" * 64, 12345)) <= 64
