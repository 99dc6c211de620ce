"""The NMI simulator: population, query.php, transact.php and the control API, over real sockets."""

import unicodedata
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import phonenumbers
import pytest
import requests

from sandbox import registry
from sandbox.nmi.server import NmiSimulator
from sandbox.nmi.xml_writer import ACTION_FIELDS, PRODUCT_FIELDS, TRANSACTION_FIELDS

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with NmiSimulator(seed=11) as sim:
        yield sim


@pytest.fixture
def sim(server):
    server.clear()
    server.reset()
    return server


def query(sim, **params):
    params.setdefault("security_key", sim.security_key)
    answer = requests.post(f"{sim.url}/api/query.php", data=params, timeout=10)
    assert answer.status_code == 200
    return answer, ElementTree.fromstring(answer.content)


def transact(sim, **params):
    params.setdefault("security_key", sim.security_key)
    answer = requests.post(f"{sim.url}/api/transact.php", data=params, timeout=10)
    assert answer.status_code == 200
    return dict(parse_qsl(answer.text, keep_blank_values=True)), answer.text


def test_registered_under_its_name():
    assert registry.load("nmi") is NmiSimulator
    sim = NmiSimulator(host="127.0.0.1", port=0, security_key="k", webhook_url="http://x", seed=3)
    assert sim.security_key == "k" and sim.webhook_url == "http://x"


def test_population_is_deterministic_and_counts_are_exact():
    a, b = NmiSimulator(seed=5), NmiSimulator(seed=5)
    sa = a.seed_population(failed=200, succeeded=150, refunds=10, now=NOW)
    sb = b.seed_population(failed=200, succeeded=150, refunds=10, now=NOW)
    assert sa == sb
    assert [(t.transaction_id, t.customer.email, t.amount) for t in a.transactions] == [
        (t.transaction_id, t.customer.email, t.amount) for t in b.transactions
    ]
    conditions = Counter(t.condition for t in a.transactions)
    assert conditions["failed"] == 200
    assert sum(1 for t in a.transactions if t.sale_action and t.sale_action.success) == 150
    assert (
        sa["refunds"] == 10 and sum(1 for t in a.transactions if t.actions[0].action_type == "refund") == 10
    )
    ids = [int(t.transaction_id) for t in a.transactions]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(NOW - timedelta(days=30) <= t.created <= NOW for t in a.transactions)


def test_population_is_realistic():
    sim = NmiSimulator(seed=9)
    sim.seed_population(failed=600, succeeded=200, now=NOW)
    txns = sim.transactions
    customers = {id(t.customer): t.customer for t in txns}.values()
    for c in customers:
        number = phonenumbers.parse(c.phone, c.country)
        assert phonenumbers.is_valid_number(number), (c.phone, c.country)
        assert "@" in c.email
    # an address is written from the name as people do: José Muñoz is jose.munoz@..., not jos.muoz@...
    accented = [c for c in customers if not f"{c.first_name}{c.last_name}".isascii()]
    assert accented
    for c in accented:
        local = c.email.partition("@")[0].lower()
        plain = unicodedata.normalize("NFKD", c.first_name.lower()).encode("ascii", "ignore").decode()
        assert local.startswith("".join(ch for ch in plain if ch.isalnum())), (c.first_name, c.email)
    assert len({c.country for c in customers}) >= 10
    us_states = {c.state for c in customers if c.country == "US"}
    assert len(us_states) >= 15
    codes = Counter(t.actions[0].response_code for t in txns if t.condition == "failed")
    assert codes.most_common(1)[0][0] == "202" and {"201", "223"} <= set(codes)
    assert {t.actions[0].source for t in txns} >= {"api", "recurring"}
    assert any(t.currency != "USD" for t in txns)
    retries = Counter(t.order_id for t in txns if t.condition == "failed")
    assert any(n > 1 for n in retries.values())  # retries of the same order
    settled = [t for t in txns if any(a.action_type == "settle" for a in t.actions)]
    assert settled and all(t.modified > t.created for t in settled)


def test_query_xml_has_every_element_in_nmi_order(sim):
    sim.seed_population(failed=3, succeeded=3, refunds=1, now=NOW)
    _answer, root = query(sim)
    assert root.tag == "nm_response"
    transactions = root.findall("transaction")
    assert len(transactions) == len(sim.transactions)
    for txn in transactions:
        children = [c.tag for c in txn]
        scalar = [t for t in children if t not in ("product", "action")]
        assert scalar == list(TRANSACTION_FIELDS)
        assert children[-1] == "action"  # repeated <action> siblings, last
        for action in txn.findall("action"):
            assert [c.tag for c in action] == list(ACTION_FIELDS)
            assert len(action.findtext("date")) == 14
        for product in txn.findall("product"):
            assert [c.tag for c in product] == list(PRODUCT_FIELDS)


def test_query_is_streamed(sim):
    sim.seed_population(failed=50, now=NOW)
    answer, _root = query(sim)
    assert "Content-Length" not in answer.headers
    assert answer.headers["Content-Type"].startswith("text/xml")
    assert answer.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


def test_bad_key_is_an_error_response_with_http_200(sim):
    _answer, root = query(sim, security_key="nope")
    assert root.findtext("error_response") == "Authentication Failed"


def test_empty_result_is_an_empty_root(sim):
    _answer, root = query(sim)
    assert root.tag == "nm_response" and len(root) == 0


def test_filters_paging_and_order(sim):
    sim.seed_population(failed=30, succeeded=20, now=NOW)
    failed = [t for t in sim.transactions if t.condition == "failed"]
    _a, root = query(sim, condition="failed", action_type="sale", result_limit="10", page_number="0")
    assert [t.findtext("transaction_id") for t in root] == [t.transaction_id for t in failed[:10]]
    _a, root = query(sim, condition="failed", result_limit="10", page_number="2")
    assert [t.findtext("transaction_id") for t in root] == [t.transaction_id for t in failed[20:30]]
    _a, root = query(sim, condition="failed", result_limit="10", page_number="3")
    assert len(root) == 0
    _a, root = query(sim, condition="failed", result_order="reverse", result_limit="1")
    assert root[0].findtext("transaction_id") == failed[-1].transaction_id
    _a, root = query(sim, transaction_id=f"{failed[0].transaction_id},{failed[1].transaction_id}")
    assert len(root) == 2
    _a, root = query(sim, order_id=failed[3].order_id)
    assert {t.findtext("order_id") for t in root} == {failed[3].order_id}
    _a, root = query(sim, condition="pendingsettlement,complete")
    assert {t.findtext("condition") for t in root} <= {"pendingsettlement", "complete"} and len(root) >= 20
    _a, root = query(sim, action_type="settle")
    assert all(any(a.findtext("action_type") == "settle" for a in t.findall("action")) for t in root)


def test_dates_filter_the_last_modified_time_inclusively(sim):
    txn = sim.add_transaction(condition="pendingsettlement", at=NOW - timedelta(days=5))
    stamp = (NOW - timedelta(days=5)).strftime("%Y%m%d%H%M%S")
    _a, root = query(sim, start_date=stamp, end_date=stamp)
    assert len(root) == 1
    today = NOW.strftime("%Y%m%d")
    _a, root = query(sim, start_date=f"{today}000000", end_date=f"{today}235959")
    assert len(root) == 0
    sim.refund(txn.transaction_id, "1.00", at=NOW)
    _a, root = query(sim, start_date=f"{today}000000", end_date=f"{today}235959")
    ids = {t.findtext("transaction_id") for t in root}
    assert txn.transaction_id in ids and len(ids) == 2  # the original (modified) and the refund itself
    _a, root = query(sim, start_date="2026-03-14")
    assert "start_date" in root.findtext("error_response")


def test_sale_against_the_vault_and_test_mode_decline(sim):
    sim.set_vault_outcome("CV-7", None)
    fields, raw = transact(sim, type="sale", customer_vault_id="CV-7", amount="10.00", orderid="A1")
    assert raw.startswith("response=1&responsetext=SUCCESS&authcode=")
    assert list(fields)[:9] == [
        "response", "responsetext", "authcode", "transactionid", "avsresponse", "cvvresponse", "orderid",
        "type", "response_code",
    ]  # fmt: skip
    assert (
        fields["response_code"] == "100"
        and fields["customer_vault_id"] == "CV-7"
        and fields["type"] == "sale"
    )
    declined, _raw = transact(sim, type="sale", customer_vault_id="CV-7", amount="0.99", orderid="A2")
    assert (declined["response"], declined["response_code"]) == ("2", "200")
    txn = sim.transaction(declined["transactionid"])
    assert txn.condition == "failed" and txn.order_id == "A2"


def test_duplicate_detection_by_order_id(sim):
    sim.set_vault_outcome("CV-8", None)
    first, _ = transact(
        sim, type="sale", customer_vault_id="CV-8", amount="10.00", orderid="D1", dup_seconds="600"
    )
    second, _ = transact(
        sim, type="sale", customer_vault_id="CV-8", amount="10.00", orderid="D1", dup_seconds="600"
    )
    assert first["response"] == "1"
    assert second["response"] == "3" and second["responsetext"].startswith("Duplicate transaction REFID:")
    third, _ = transact(
        sim, type="sale", customer_vault_id="CV-8", amount="10.00", orderid="D1", dup_seconds="0"
    )
    assert third["response"] == "1"


def test_transact_errors(sim):
    bad_key, _ = transact(sim, security_key="x", type="sale", amount="1.00")
    assert (bad_key["response"], bad_key["responsetext"], bad_key["response_code"]) == (
        "3",
        "Authentication Failed",
        "300",
    )
    for params in (
        {"type": "sale", "amount": "abc", "customer_vault_id": "CV"},
        {"type": "sale", "amount": "1.00"},
        {"type": "bogus"},
        {"type": "refund", "transactionid": "1"},
        {"customer_vault": "update_customer", "customer_vault_id": "nobody", "payment_token": "t"},
    ):
        fields, _ = transact(sim, **params)
        assert fields["response"] == "3" and " REFID:" in fields["responsetext"], params
    assert requests.get(f"{sim.url}/api/transact.php", timeout=5).status_code == 405


def test_vault_add_update_and_card_sale(sim):
    added, _ = transact(
        sim, customer_vault="add_customer", customer_vault_id="NEW1", ccnumber="4111111111111111",
        ccexp="1030", first_name="Ana", email="ana@example.com", country="US", zip="33101",
    )  # fmt: skip
    assert added["response"] == "1" and added["customer_vault_id"] == "NEW1" and added["type"] == ""
    assert sim.vault("NEW1").card.cc_number == "4xxxxxxxxxxx1111" and sim.vault("NEW1").postal_code == "33101"
    updated, _ = transact(
        sim, customer_vault="update_customer", customer_vault_id="NEW1", payment_token="tok1"
    )
    assert updated["response"] == "1"
    reused, _ = transact(
        sim, customer_vault="update_customer", customer_vault_id="NEW1", payment_token="tok1"
    )
    assert reused["response"] == "3"
    sale, _ = transact(sim, type="sale", ccnumber="5431111111111111", ccexp="1030", amount="5.00")
    assert sale["response"] == "1" and "customer_vault_id" not in sale


def test_control_api(sim):
    base = f"{sim.url}/_control"
    seeded = requests.post(f"{base}/seed", json={"failed": 5, "succeeded": 5, "seed": 2}, timeout=10)
    assert seeded.status_code == 201 and seeded.json()["failed"] == 5
    listed = requests.get(f"{base}/transactions", params={"condition": "failed"}, timeout=5).json()
    assert listed["total"] == 5 and {i["condition"] for i in listed["items"]} == {"failed"}
    added = requests.post(
        f"{base}/transactions",
        json={"amount": "12.34", "decline_code": "223", "order_id": "CTRL-1",
              "customer": {"email": "x@example.com", "country": "GB"}, "at": "2026-03-01T10:00:00Z"},
        timeout=5,
    )  # fmt: skip
    assert added.status_code == 201
    item = added.json()
    assert item["amount"] == "12.34" and item["response_code"] == "223" and item["order_id"] == "CTRL-1"
    assert item["customer"]["email"] == "x@example.com" and item["created"].startswith("2026-03-01T10:00:00")
    txn_id = item["transaction_id"]
    settled = requests.post(
        f"{base}/transactions/{txn_id}/settle", json={"at": "2026-03-02T03:00:00Z"}, timeout=5
    )
    assert settled.json()["modified"].startswith("2026-03-02T03:00:00")
    assert requests.get(f"{base}/transactions/{txn_id}", timeout=5).json()["actions"] == ["sale", "settle"]
    assert requests.get(f"{base}/transactions/999", timeout=5).status_code == 404
    vault = requests.post(
        f"{base}/vault", json={"customer_vault_id": "CV-X", "decline_code": "202"}, timeout=5
    )
    assert vault.json()["forced_decline"] == ["202", None]
    assert requests.get(f"{base}/vault/CV-X", timeout=5).json()["customer_vault_id"] == "CV-X"
    config = requests.post(f"{base}/config", json={"webhook_url": "http://127.0.0.1:1/h"}, timeout=5).json()
    assert config["webhook_url"] == "http://127.0.0.1:1/h"
    fault = requests.post(f"{base}/faults", json={"kind": "truncated_xml", "count": 1}, timeout=5)
    assert fault.status_code == 201
    assert requests.post(f"{base}/transactions", json={"condition": "weird"}, timeout=5).status_code == 400
    assert requests.post(f"{base}/clear", timeout=5).json() == {"ok": True}
    assert requests.get(f"{base}/transactions", timeout=5).json()["total"] == 0
    sim.webhook_url = None


def test_a_webhook_to_nowhere_is_recorded_not_raised(sim):
    txn = sim.add_transaction()
    delivery = sim.send_webhook("transaction.sale.failure", txn, url="http://127.0.0.1:9/h", timeout=0.5)
    assert delivery.status is None and delivery.error
    assert sim.webhooks_sent[-1] is delivery


def test_a_token_sale_names_only_the_payer_it_was_given_and_is_listed_with_its_order_id(sim):
    token, _ = sim.collect.mint({"ccnumber": "4000000000000002", "ccexp": "1230", "cvv": "123"})
    sale, _ = transact(sim, type="sale", payment_token=token, amount="49.00", orderid="rc7-attempt")
    assert sale["response"] == "2" and sale["response_code"] == "201"
    txn = sim.transaction(sale["transactionid"])
    assert (txn.customer.customer_vault_id, txn.customer.first_name, txn.customer.email) == (None, "", "")
    _, root = query(sim, condition="failed", order_id="rc7-attempt")
    [record] = root.findall("transaction")
    assert record.findtext("transaction_id") == sale["transactionid"]
    assert record.findtext("cc_number") == "4xxxxxxxxxxx0002" and record.findtext("customerid") == ""


def test_a_vault_record_takes_the_card_an_earlier_transaction_was_paid_with(sim):
    sim.set_vault_outcome("CV-9", "202")
    token, _ = sim.collect.mint({"ccnumber": "4242424242424242", "ccexp": "1230", "cvv": "123"})
    sale, _ = transact(sim, type="sale", payment_token=token, amount="5.00", orderid="o-1")
    updated, _ = transact(sim, customer_vault="update_customer", customer_vault_id="CV-9",
                          source_transaction_id=sale["transactionid"])
    assert updated["response"] == "1" and updated["customer_vault_id"] == "CV-9"
    assert sim.vault("CV-9").card.cc_number == "4xxxxxxxxxxx4242" and sim.vault("CV-9").forced_decline is None
    missing, _ = transact(sim, customer_vault="update_customer", customer_vault_id="CV-9", source_transaction_id="1")
    assert missing["response"] == "3"


def test_transact_sales_push_their_webhook_when_asked(sim):
    import time

    sim.set_vault_outcome("CV-W", "202")
    sim.webhook_url, sim.transact_webhooks = "http://127.0.0.1:9/h", True
    try:
        sale, _ = transact(sim, type="sale", customer_vault_id="CV-W", amount="12.00", orderid="rc3-push")
        deadline = time.monotonic() + 5
        while not sim.webhooks_sent and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sim.webhook_url, sim.transact_webhooks = None, False
    [delivery] = sim.webhooks_sent
    body = delivery.to_dict()["body"]
    assert delivery.event_type == "transaction.sale.failure" and sale["transactionid"] in body
    assert '"order_id": "rc3-push"' in body and '"customerid": "CV-W"' in body
