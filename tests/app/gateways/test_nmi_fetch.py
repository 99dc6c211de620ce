"""Fetching failed sales from the simulator over real sockets: paging, windows, faults."""

import logging
import time
from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest

from app.gateways.base import FetchPage, GatewayAuthError, GatewayProtocolError, GatewayUnavailable
from app.gateways.nmi import NmiGateway, normalise_phone, to_minor
from rules.declines import DeclineReason

from .conftest import make_gateway

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=31)


def fetch_all(gateway, since=SINCE, until=NOW, **kw):
    records, pages = [], []
    for page in gateway.fetch_failed(since, until, **kw):
        records.extend(page.records)
        pages.append(page)
    return records, pages


@pytest.fixture
def seeded(sim):
    sim.seed_population(failed=120, succeeded=80, days=30, now=NOW)
    return sim


def expected_failed(sim, since=SINCE, until=NOW):
    return {
        t.transaction_id for t in sim.transactions if t.condition == "failed" and since <= t.modified <= until
    }


def assert_windows_read_whole(pages, since=SINCE, until=NOW, size=50):
    """Each window asked for in one request; a full one halved and read again; the closed ones cover the range."""
    closed = [p for p in pages if p.closes]
    assert all(p.page_number == 0 for p in pages) and all(p.count < size for p in closed)
    assert all(p.count == size for p in pages if not p.closes)
    assert closed[0].since == since and closed[-1].until == until
    assert all(b.since == a.until + timedelta(seconds=1) for a, b in zip(closed, closed[1:], strict=False))


def test_windows_are_halved_until_each_is_read_whole_and_return_exactly_the_failed_sales(seeded, gateway):
    records, pages = fetch_all(gateway)
    assert_windows_read_whole(pages)
    assert pages[0].since == SINCE and pages[0].until == NOW and pages[0].count == 50 and not pages[0].closes
    ids = [r.gateway_transaction_id for r in records]
    assert set(ids) == expected_failed(seeded)  # a full page is read again in halves: some ids twice
    sent = [r.form() for r in seeded.received("/api/query.php")]
    assert {s["page_number"] for s in sent} == {"0"} and len(sent) == len(pages)
    assert {(s["condition"], s["action_type"], s["result_limit"]) for s in sent} == {("failed", "sale", "50")}
    assert sent[0]["start_date"] == SINCE.strftime("%Y%m%d%H%M%S") and sent[0]["end_date"] == "20260314120000"


def test_a_narrow_window_steps_through_the_range(seeded):
    gateway = make_gateway(seeded, max_window_seconds=7 * 86400)
    records, pages = fetch_all(gateway)
    assert_windows_read_whole(pages)
    assert all(p.until - p.since < timedelta(days=7) for p in pages)
    assert {r.gateway_transaction_id for r in records} == expected_failed(seeded)


def test_one_second_fuller_than_a_page_is_paged_by_number(sim, gateway):
    moment = NOW - timedelta(hours=1)
    for _ in range(60):
        sim.add_transaction(at=moment)
    records, pages = fetch_all(gateway)
    assert {r.gateway_transaction_id for r in records} == expected_failed(sim)
    second = [p for p in pages if p.since == p.until == moment]
    assert [p.page_number for p in second] == [0, 1] and [p.count for p in second] == [50, 10]
    assert second[-1].closes and not second[0].closes


def test_records_carry_customer_amount_decline_and_products(seeded, gateway):
    records, _ = fetch_all(gateway)
    by_id = {t.transaction_id: t for t in seeded.transactions}
    for record in records:
        txn = by_id[record.gateway_transaction_id]
        c = txn.customer
        assert record.gateway == "nmi" and record.condition == "failed"
        assert record.failed_at == txn.created and record.failed_at.tzinfo is UTC
        assert record.amount_minor == to_minor(txn.amount, txn.currency)
        assert record.currency == txn.currency
        assert record.decline_code == txn.actions[0].response_code
        assert record.order_id == txn.order_id
        assert record.customer.email == c.email.lower()
        assert record.customer.country == c.country and record.customer.region == (c.state or None)
        assert record.customer.postal_code == (c.postal_code or None)
        assert record.customer.customer_id == c.customer_vault_id
        assert record.customer.card_masked == c.card.cc_number and "x" in record.customer.card_masked
        assert record.customer.phone_raw == c.phone
        number = phonenumbers.parse(record.customer.phone_e164)
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) in {c.country, "US", "CA", "PR"}
        assert [p.sku for p in record.products] == [p.sku for p in txn.products]
        assert gateway.classify(record.decline_code).reason is not DeclineReason.unknown
        assert record.raw["transaction_id"] == txn.transaction_id


def test_zero_decimal_currency_amounts(sim, gateway):
    sim.add_transaction(amount="4900.00", currency="JPY", at=NOW - timedelta(hours=1), decline_code="202")
    [record], _ = fetch_all(gateway)
    assert (record.amount_minor, record.currency) == (4900, "JPY")


def test_window_filters_on_last_modified_and_overlapping_windows_dedupe_on_id(sim, gateway):
    early = sim.add_transaction(at=NOW - timedelta(days=3))
    late = sim.add_transaction(at=NOW - timedelta(hours=2))
    sim.add_transaction(condition="pendingsettlement", at=NOW - timedelta(hours=2))
    first, _ = fetch_all(gateway, NOW - timedelta(days=4), NOW - timedelta(days=1))
    second, _ = fetch_all(gateway, NOW - timedelta(days=2), NOW)  # overlaps the first window
    assert [r.gateway_transaction_id for r in first] == [early.transaction_id]
    assert [r.gateway_transaction_id for r in second] == [late.transaction_id]
    # a later action on an old transaction moves it into today's window; the caller dedupes on the id
    sim.settle(early.transaction_id, at=NOW - timedelta(minutes=5))
    third, _ = fetch_all(gateway, NOW - timedelta(hours=1), NOW)
    assert [r.gateway_transaction_id for r in third] == [early.transaction_id]
    assert third[0].modified_at == NOW - timedelta(minutes=5) and third[0].failed_at == early.created


def test_window_bounds_are_inclusive_and_must_be_aware(sim, gateway):
    on_edge = sim.add_transaction(at=NOW)
    records, _ = fetch_all(gateway, NOW, NOW)
    assert [r.gateway_transaction_id for r in records] == [on_edge.transaction_id]
    with pytest.raises(ValueError):
        list(gateway.fetch_failed(datetime(2026, 1, 1), NOW))
    with pytest.raises(ValueError):
        list(gateway.fetch_failed(NOW, SINCE))


def test_a_page_must_be_consumed_before_the_next(seeded, gateway):
    pages = gateway.fetch_failed(SINCE, NOW)
    page = next(pages)
    assert isinstance(page, FetchPage)
    with pytest.raises(RuntimeError):
        page.more  # noqa: B018
    with pytest.raises(RuntimeError):
        next(pages)


@pytest.mark.parametrize("kind", ["http_429", "http_500", "http_502", "http_503", "reset"])
def test_transient_http_failures_are_retried(seeded, gateway, kind):
    seeded.inject(kind, count=2, path="/api/query.php")
    records, _ = fetch_all(gateway)
    assert len({r.gateway_transaction_id for r in records}) == len(records) == 120


def test_retry_after_is_honoured_up_to_the_cap(seeded):
    slept = []
    gateway = make_gateway(seeded, sleep=slept.append, max_retry_after=0.5, backoff=0.001)
    seeded.inject("http_429", count=1, path="/api/query.php")
    fetch_all(gateway)
    assert slept and slept[0] == 0.5  # the harness says Retry-After: 1, capped at 0.5


def test_timeouts_are_retried(seeded, gateway):
    seeded.inject("timeout", count=1, seconds=2.5, path="/api/query.php")
    started = time.monotonic()
    records, _ = fetch_all(gateway)
    assert len(records) == 120 and time.monotonic() - started < 5


def test_truncated_page_is_refetched_without_handing_out_a_record_twice(seeded, gateway):
    seeded.inject("truncated_xml", count=1, path="/api/query.php")
    per_page = [[r.gateway_transaction_id for r in page.records] for page in gateway.fetch_failed(SINCE, NOW)]
    assert {i for ids in per_page for i in ids} == expected_failed(seeded)
    assert len(seeded.received("/api/query.php")) == len(per_page) + 1  # the first window twice
    assert len(per_page[0]) == len(set(per_page[0])) == 50  # none of the cut page handed out twice


def test_malformed_page_is_refetched(seeded, gateway):
    seeded.inject("malformed_xml", count=1, path="/api/query.php")
    records, _ = fetch_all(gateway)
    assert len({r.gateway_transaction_id for r in records}) == 120


def test_persistent_truncation_fails_the_page_so_the_cursor_stays(seeded, gateway, caplog):
    seeded.inject("truncated_xml", count=10, path="/api/query.php")
    consumed = []
    with pytest.raises(GatewayProtocolError), caplog.at_level(logging.WARNING):
        for page in gateway.fetch_failed(SINCE, NOW):
            consumed.extend(page.records)
    assert len(consumed) == 3  # the complete records before the cut, handed out once
    assert "query.php" in caplog.text


def test_persistent_unavailability_is_gateway_unavailable(seeded, gateway):
    seeded.inject("http_503", count=10, path="/api/query.php")
    with pytest.raises(GatewayUnavailable):
        fetch_all(gateway)


def test_unreachable_gateway(sim):
    gateway = NmiGateway("key", "http://127.0.0.1:9/api", timeout=(0.2, 0.2), max_attempts=2, backoff=0.01)
    with pytest.raises(GatewayUnavailable):
        fetch_all(gateway)


def test_error_response_for_a_bad_key_is_an_auth_error(seeded, caplog):
    gateway = make_gateway(seeded, security_key="wrong")
    with pytest.raises(GatewayAuthError, match="Authentication Failed"), caplog.at_level(logging.ERROR):
        fetch_all(gateway)
    assert len(seeded.received("/api/query.php")) == 1  # no retries on a bad key
    assert "refused" in caplog.text


def test_injected_error_response(seeded, gateway):
    seeded.inject("error_response", count=1, path="/api/query.php")
    with pytest.raises(GatewayAuthError):
        fetch_all(gateway)


def test_entity_bomb_is_refused_without_retrying(seeded, gateway):
    seeded.inject("entity_bomb", count=1, path="/api/query.php")
    with pytest.raises(GatewayProtocolError, match="hostile"):
        fetch_all(gateway)
    assert len(seeded.received("/api/query.php")) == 1


def test_huge_text_is_capped_and_the_page_completes(seeded):
    seeded.huge_text_bytes = 2 * 1024 * 1024
    gateway = make_gateway(seeded, max_text=4096)
    seeded.inject("huge_text", count=1, path="/api/query.php")
    records, _ = fetch_all(gateway)
    assert len(records) == 120
    assert len(records[0].order_description) <= 4096 + 12


def test_a_single_large_page_streams(sim):
    sim.seed_population(failed=3000, days=30, now=NOW)
    gateway = make_gateway(sim, page_size=5000, timeout=(1.0, 5.0))
    records, pages = fetch_all(gateway)
    assert len(pages) == 1 and len(records) == 3000 and pages[0].last_modified_at <= NOW


def test_phone_normalisation():
    assert normalise_phone("503-555-0147", "US") == "+15035550147"
    assert normalise_phone("(212) 736-5000", "US") == "+12127365000"
    assert normalise_phone("07400 123456", "GB") == "+447400123456"
    assert normalise_phone("+44 7400 123456", "US") == "+447400123456"
    assert normalise_phone("N/A", "US") is None and normalise_phone("", "US") is None
    assert normalise_phone("12", None) is None


def test_from_env():
    gateway = NmiGateway.from_env({"NMI_SECURITY_KEY": "k", "NMI_API_URL": "http://x/api/"})
    assert gateway.api_url == "http://x/api" and gateway.webhook_signing_key is None
    assert NmiGateway.from_env({"NMI_SECURITY_KEY": "k"}).api_url == "https://secure.nmi.com/api"
    assert "k" not in repr(gateway)
    with pytest.raises(GatewayAuthError):
        NmiGateway.from_env({})


# -- successful sales and refunds -----------------------------------------------------------------------------


def fetch_all_sales(gateway, since=SINCE, until=NOW, **kw):
    records, pages = [], []
    for page in gateway.fetch_sales(since, until, **kw):
        records.extend(page.records)
        pages.append(page)
    return records, pages


def test_fetch_sales_returns_exactly_the_approved_sales_and_the_refunds(sim, gateway):
    sim.seed_population(failed=60, succeeded=80, refunds=10, days=30, now=NOW)
    records, pages = fetch_all_sales(gateway)
    approved = {t.transaction_id: t for t in sim.transactions if t.sale_action is not None and t.sale_action.success}
    refunds = {t.transaction_id: t for t in sim.transactions if t.sale_action is None}
    assert len(approved) == 80 and len(refunds) == 10
    ids = [r.gateway_transaction_id for r in records]
    assert set(ids) == set(approved) | set(refunds)  # a full window is read again in halves: some twice
    assert_windows_read_whole(pages) and sum(p.skipped for p in pages) == 0
    sent = [r.form() for r in sim.received("/api/query.php")]
    assert {(s["condition"], s["action_type"]) for s in sent} == {
        ("pendingsettlement,complete,canceled", "sale,refund,capture,void")}
    for record in records:
        if record.kind == "sale":
            txn = approved[record.gateway_transaction_id]
            assert not record.is_refund and record.occurred_at == txn.created
            assert record.amount_minor == to_minor(txn.amount, txn.currency) and record.currency == txn.currency
            assert record.refunded_minor == to_minor(str(txn.refunded), txn.currency)
            assert record.condition in ("pendingsettlement", "complete")
            assert record.customer.customer_id == txn.customer.customer_vault_id
            assert record.modified_at == txn.modified
        else:
            txn = refunds[record.gateway_transaction_id]
            assert record.is_refund and record.amount_minor == to_minor(txn.amount, txn.currency) > 0
            assert record.occurred_at == txn.created and record.refunded_minor == 0
            assert record.customer.email == txn.customer.email.lower() and record.order_id == txn.order_id
    assert sum(r.refunded_minor for r in records) == sum(r.amount_minor for r in records if r.is_refund)


@pytest.mark.parametrize("kind", ["http_500", "truncated_xml", "reset"])
def test_fetch_sales_shares_the_retries_of_fetch_failed(sim, gateway, kind):
    sim.seed_population(failed=30, succeeded=120, refunds=0, days=30, now=NOW)
    sim.inject(kind, count=1, path="/api/query.php")
    records, pages = fetch_all_sales(gateway)
    assert {r.gateway_transaction_id for r in records} == {
        t.transaction_id for t in sim.transactions if t.condition != "failed"}
    assert_windows_read_whole(pages)


def test_fetch_sales_with_a_bad_key_is_an_auth_error(sim):
    sim.seed_population(succeeded=5, days=2, now=NOW)
    with pytest.raises(GatewayAuthError):
        fetch_all_sales(make_gateway(sim, security_key="wrong"))


def test_fetch_sales_window_and_bounds(sim, gateway):
    sale = sim.add_transaction(condition="complete", at=NOW - timedelta(days=3))
    sim.add_transaction(at=NOW - timedelta(hours=1))  # failed: not a sale
    assert fetch_all_sales(gateway, NOW - timedelta(hours=2), NOW)[0] == []
    sim.refund(sale.transaction_id, "1.00", at=NOW - timedelta(minutes=5))  # moves the sale into today's window
    records, _ = fetch_all_sales(gateway, NOW - timedelta(hours=2), NOW)
    assert sorted(r.kind for r in records) == ["refund", "sale"]
    assert {r.refunded_minor for r in records if r.kind == "sale"} == {100}
    with pytest.raises(ValueError):
        list(gateway.fetch_sales(NOW, SINCE))
