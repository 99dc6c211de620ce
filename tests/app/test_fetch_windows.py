"""A fetch that cannot skip (issue 16, point 4): the failed sales are read in closed time windows, each in one
request, not paged with ``page_number``. The NMI simulator moves a transaction between two requests of one fetch
(``/_control/transactions/<id>/touch`` with ``before_query``), over real HTTP, on both databases."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.ingest.transactions import SAFETY_LAG, fetch_account
from app.models import FetchCursor, Transaction

SIGNING_KEY = "whsec-fetch-windows"
NMI_SEED = 23
NMI_SIGNING_KEY = SIGNING_KEY
PAGE = 50
# a window as wide as the first fetch: its answer is full, so the walker must halve it
CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05,
          "page_size": PAGE, "max_window_seconds": 31 * 86400}


def nmi_account(db, sim):
    account = save_account(
        "nmi-windows", "nmi", api_url=f"{sim.url}/api",
        credentials={"security_key": sim.security_key, "webhook_signing_key": SIGNING_KEY},
        settings={"client": CLIENT},
    )
    db.session.commit()
    return account


def nmi_date(moment):
    return moment.strftime("%Y%m%d%H%M%S")


def failed_by_id(sim):
    return sorted((t for t in sim.transactions if t.condition == "failed"), key=lambda t: int(t.transaction_id))


def touch_before_query(sim, txn_id, k):
    answer = requests.post(f"{sim.url}/_control/transactions/{txn_id}/touch", json={"before_query": k}, timeout=5)
    assert answer.status_code == 200, answer.text


def page_by_number(sim, since, until):
    """What the fetch did before: one window, paged with page_number until a short page."""
    ids, number = [], 0
    while True:
        answer = requests.post(f"{sim.url}/api/query.php", data={
            "security_key": sim.security_key, "condition": "failed", "action_type": "sale",
            "start_date": nmi_date(since), "end_date": nmi_date(until), "result_limit": str(PAGE),
            "page_number": str(number), "result_order": "standard"}, timeout=5)
        page = [t.findtext("transaction_id") for t in ET.fromstring(answer.content).iter("transaction")]
        ids += page
        if len(page) < PAGE:
            return ids
        number += 1


def stored_failed(db):
    return set(db.session.scalars(sa.select(Transaction.gateway_transaction_id).where(Transaction.status == "failed")))


def test_paging_by_number_skips_a_record_when_one_moves_during_the_fetch(sim):
    """The awkward case is real: the simulator moves the first record out of the window between page 0 and page 1,
    every later record moves up a page, and the one that was first on page 1 is never seen."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    sim.seed_population(failed=120, days=10, now=base, seed=3)
    records = failed_by_id(sim)
    touch_before_query(sim, records[0].transaction_id, 2)
    seen = page_by_number(sim, base - timedelta(days=30), base + timedelta(hours=1))
    missed = {t.transaction_id for t in records} - set(seen) - {records[0].transaction_id}
    assert missed == {records[PAGE].transaction_id}


def test_a_record_that_moves_during_the_fetch_is_not_skipped(db, sim):
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    sim.seed_population(failed=120, days=10, now=base, seed=3)
    records = failed_by_id(sim)
    everything = {t.transaction_id for t in records}
    # the same moves as above, and more: the first record before the second request, a middle one and the last one
    # later on, each to the moment it happens (after this fetch's end)
    touch_before_query(sim, records[0].transaction_id, 2)
    touch_before_query(sim, records[60].transaction_id, 3)
    touch_before_query(sim, records[-1].transaction_id, 4)
    account = nmi_account(db, sim)
    first_at = base + timedelta(hours=1)
    first = fetch_account(account.id, now=first_at)
    assert first.ok, first.error
    sent = [r.form() for r in sim.received("/api/query.php")]
    assert len(sent) >= 4 and {s["page_number"] for s in sent} == {"0"}, "windows are read whole, never paged"
    assert sent[0]["start_date"] == nmi_date(first_at - timedelta(days=30))
    assert sent[0]["end_date"] == nmi_date(first_at)  # full (120 > 50): halved, then walked to the end
    assert nmi_date(datetime.strptime(sent[1]["end_date"], "%Y%m%d%H%M%S")) < sent[0]["end_date"]
    assert sent[-1]["end_date"] == nmi_date(first_at)
    stored = stored_failed(db)
    # everything that stayed in the window is in (the one page_number missed included); of the moved ones, only
    # what had been read before it moved
    assert records[PAGE].transaction_id in stored
    assert everything - stored <= {records[60].transaction_id, records[-1].transaction_id}
    cursor = db.session.scalar(sa.select(FetchCursor).where(FetchCursor.kind == "failed_sales"))
    assert cursor.last_status == "ok"
    assert cursor.position.replace(tzinfo=UTC) == first.cursor_after == first_at - SAFETY_LAG
    # the moved records are modified after the cursor: the next fetch brings them, and nothing twice
    second = fetch_account(account.id)
    assert second.ok, second.error
    assert stored_failed(db) == everything
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction).where(
        Transaction.status == "failed")) == len(everything)


def test_a_fetch_that_fails_midway_keeps_the_cursor_at_the_last_window_read_whole(db, sim):
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    sim.seed_population(failed=120, days=10, now=base, seed=4)
    account = nmi_account(db, sim)
    first_at = base + timedelta(hours=1)
    # every request fails from the fifth on (retries included): the first windows were read, the rest not
    sim.inject("http_500", count=1000, after=4, path="/api/query.php")
    report = fetch_account(account.id, now=first_at)
    assert not report.ok
    cursor = db.session.scalar(sa.select(FetchCursor).where(FetchCursor.kind == "failed_sales"))
    assert cursor.last_status == "error" and cursor.position is not None
    position = cursor.position.replace(tzinfo=UTC)
    assert first_at - timedelta(days=30) < position < first_at - SAFETY_LAG
    # what the cursor passed is stored; what it did not is fetched by the next run
    read_whole = {t.transaction_id for t in sim.transactions if t.condition == "failed" and t.modified <= position}
    assert read_whole and read_whole <= stored_failed(db)
    sim.reset()
    again = fetch_account(account.id, now=first_at)
    assert again.ok, again.error
    assert stored_failed(db) == {t.transaction_id for t in sim.transactions if t.condition == "failed"}
