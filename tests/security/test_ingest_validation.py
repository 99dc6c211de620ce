"""Issue 15, low finding: gateway data was not validated. A negative amount, a bogus currency, a CRLF in an email
address or a U+2028 in a name went into the database as sent, and a message built from them was retried for ever.
Now every record is checked before it is stored (app.ingest.validation): what can be cleaned is, what cannot is
quarantined with its reasons (app.ingest.quarantine), and the rest of the batch, and the fetch cursor, go on.

Every test fetches from the NMI simulator over real HTTP (or posts its signed webhook), on SQLite and MariaDB."""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa

from app.accounts.gateway_accounts import save_account
from app.gateways.base import RecordUnreadable
from app.gateways.nmi import record_amount
from app.ingest.transactions import fetch_account
from app.ingest.validation import check_email, clean_text
from app.models import Customer, FetchCursor, InboundEvent, QuarantinedRecord, RecoveryCase, Transaction
from sandbox.nmi.server import NmiSimulator

KEY = "whsec-ingest-validation"
CLIENT = {"timeout": [1.0, 2.0], "backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.05, "page_size": 200}


@pytest.fixture(scope="module")
def nmi():
    with NmiSimulator(seed=15, webhook_signing_key=KEY) as sim:
        yield sim


@pytest.fixture
def sim(nmi):
    nmi.clear()
    nmi.reset()
    yield nmi
    nmi.clear()


def account(db, sim):  # type: ignore[no-untyped-def]
    row = save_account("nmi-checked", "nmi", api_url=f"{sim.url}/api",
                       credentials={"security_key": sim.security_key, "webhook_signing_key": KEY},
                       settings={"client": CLIENT})
    db.session.commit()
    return row


def stored_ids(db, status="failed"):  # type: ignore[no-untyped-def]
    return set(db.session.scalars(sa.select(Transaction.gateway_transaction_id).where(Transaction.status == status)))


def quarantined(db):  # type: ignore[no-untyped-def]
    return list(db.session.scalars(sa.select(QuarantinedRecord).order_by(QuarantinedRecord.id)))


BAD_RECORDS = {
    "negative amount": ({"amount": "-12.00"}, "amount", "negative"),
    "bogus currency": ({"currency": "XYZ"}, "currency", "ISO 4217"),
    "CRLF in the email": ({"customer": {"email": "ana@example.com\r\nBcc: everyone@example.net"}}, "email",
                          "line break"),
    "bidi override in a name": ({"customer": {"last_name": "Ruiz\u202egnp.exe"}}, "last_name", "U+202E"),
    "DEL in an order id": ({"order_id": "ORD-1\x7f"}, "order_id", "U+007F"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS), ids=list(BAD_RECORDS))
def test_a_bad_record_is_quarantined_and_the_rest_of_the_batch_goes_on(db, sim, case):
    spec, field, problem = BAD_RECORDS[case]
    good = [sim.add_transaction(condition="failed", amount="40.00", decline_code="202") for _ in range(3)]
    bad = sim.add_transaction(condition="failed", decline_code="202", **spec)
    row = account(db, sim)

    report = fetch_account(row.id)

    assert report.ok, report.error
    assert report.result.quarantined == 1 and "1 quarantined" in report.summary()
    assert stored_ids(db) == {t.transaction_id for t in good}  # the bad one is not stored; the others are
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 3  # it opened nothing
    held = quarantined(db)
    assert [(q.gateway_transaction_id, q.kind, q.source) for q in held] == [(bad.transaction_id, "failed_sale",
                                                                             "fetch")]
    assert held[0].raw["transaction_id"] == bad.transaction_id  # the record as received
    assert any(r["field"] == field and problem in r["problem"] for r in held[0].reasons), held[0].reasons
    assert held[0].dismissed_at is None
    cursor = db.session.scalar(sa.select(FetchCursor).where(FetchCursor.kind == "failed_sales"))
    assert cursor.position is not None and cursor.last_status == "ok"  # one bad row never stops the cursor

    again = fetch_account(row.id)  # the next window overlaps: the same bad record comes again
    assert again.ok and again.result.new_transactions == 0
    held = quarantined(db)
    assert len(held) == 1 and held[0].times_seen == 2  # seen again, not quarantined twice


def test_a_record_corrected_at_the_gateway_comes_in_and_leaves_quarantine(db, sim):
    from app.ingest.quarantine import ACCEPTED_LATER

    txn = sim.add_transaction(condition="failed", decline_code="202", currency="XYZ")
    row = account(db, sim)
    assert fetch_account(row.id).result.quarantined == 1
    sim.transaction(txn.transaction_id).currency = "USD"  # the merchant corrects it at the gateway
    again = fetch_account(row.id)
    assert again.ok and again.result.new_cases == 1 and again.result.quarantined == 0
    assert stored_ids(db) == {txn.transaction_id}
    db.session.expire_all()
    [held] = quarantined(db)
    assert held.dismissed_at is not None and held.dismissed_by == ACCEPTED_LATER


def test_a_control_character_xml_cannot_carry_does_not_poison_the_page(db, sim):
    """An ESC in a merchant's field made NMI's whole XML page unparseable: every fetch failed on it, for ever. It
    arrives as U+FFFD now, and the page with it."""
    others = [sim.add_transaction(condition="failed", decline_code="202") for _ in range(2)]
    txn = sim.add_transaction(condition="failed", decline_code="202", customer={"first_name": "Ana\x1b[2J"})
    report = fetch_account(account(db, sim).id)
    assert report.ok, report.error
    assert stored_ids(db) == {t.transaction_id for t in [*others, txn]}
    name = db.session.scalar(sa.select(Customer.first_name).join(Transaction, Transaction.customer_id == Customer.id)
                             .where(Transaction.gateway_transaction_id == txn.transaction_id))
    assert name == "Ana\ufffd[2J"


def test_a_control_character_in_a_pushed_name_is_quarantined(client, db, sim):
    """JSON can carry an ESC that XML cannot: a webhook's record is refused for it."""
    import json

    account(db, sim)
    txn = sim.add_transaction(condition="failed", decline_code="202")
    body = sim.webhook_body("transaction.sale.failure", txn)
    body["billing_address"]["first_name"] = "Ana\x1b[2J"
    raw = json.dumps({"event_id": "evt-esc", "event_type": "transaction.sale.failure", "event_body": body}).encode()
    answer = client.post("/hooks/nmi", data=raw, headers={"Webhook-Signature": sim.sign(raw),
                                                          "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json["received"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 0
    [held] = quarantined(db)
    assert held.reasons == [{"field": "first_name", "problem": "contains the control character U+001B"}]
    assert held.raw["billing_address"]["first_name"] == "Ana\x1b[2J"  # kept as received


def test_a_line_separator_in_a_name_is_cleaned_and_the_payment_kept(db, sim):
    txn = sim.add_transaction(condition="failed", decline_code="202",
                              customer={"first_name": "Ana\u2028María", "last_name": " López\u2029\tRuiz "})
    report = fetch_account(account(db, sim).id)
    assert report.ok and report.result.new_cases == 1 and report.result.quarantined == 0
    customer = db.session.scalar(sa.select(Customer).join(Transaction, Transaction.customer_id == Customer.id)
                                 .where(Transaction.gateway_transaction_id == txn.transaction_id))
    assert (customer.first_name, customer.last_name) == ("Ana María", "López Ruiz")
    assert quarantined(db) == []


@pytest.mark.parametrize("phone", ["12", "call me maybe", "+1 555 01"])
def test_a_malformed_phone_is_dropped_with_its_reason_and_the_payment_kept(db, sim, phone):
    txn = sim.add_transaction(condition="failed", decline_code="202",
                              customer={"phone": phone, "email": "luis@example.com", "country": "US"})
    report = fetch_account(account(db, sim).id)
    assert report.ok and report.result.new_cases == 1 and quarantined(db) == []
    stored = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == txn.transaction_id))
    assert stored.customer.phone_e164 is None and stored.customer.phone_raw is None
    assert stored.customer.email == "luis@example.com"
    assert [d["field"] for d in stored.raw["recoup_dropped"]] == ["phone"]
    assert "not a phone number" in stored.raw["recoup_dropped"][0]["problem"]


def test_a_malformed_email_is_dropped_but_two_addresses_are_refused(db, sim):
    typo = sim.add_transaction(condition="failed", decline_code="202", customer={"email": "ana@example"})
    two = sim.add_transaction(condition="failed", decline_code="202",
                              customer={"email": "ana@example.com,boss@example.com"})
    report = fetch_account(account(db, sim).id)
    assert report.ok and stored_ids(db) == {typo.transaction_id}
    stored = db.session.scalar(sa.select(Transaction).where(Transaction.gateway_transaction_id == typo.transaction_id))
    assert stored.customer.email is None and stored.raw["recoup_dropped"][0]["field"] == "email"
    [held] = quarantined(db)
    assert held.gateway_transaction_id == two.transaction_id
    assert held.reasons == [{"field": "email", "problem": "more than one address"}]


def test_a_bad_sale_is_quarantined_and_the_sales_cursor_moves_on(db, sim):
    good = sim.add_transaction(condition="pendingsettlement", amount="25.00")
    bad = sim.add_transaction(condition="pendingsettlement", amount="-25.00")
    report = fetch_account(account(db, sim).id)
    assert report.ok and report.sales.ok, report.summary()
    assert report.sales.result.quarantined == 1
    assert stored_ids(db, "approved") == {good.transaction_id}
    [held] = quarantined(db)
    assert (held.gateway_transaction_id, held.kind) == (bad.transaction_id, "sale")
    assert db.session.scalar(sa.select(FetchCursor.last_status).where(FetchCursor.kind == "sales")) == "ok"


def test_a_signed_webhook_with_a_bad_record_is_quarantined_once_and_acknowledged(client, db, sim):
    account(db, sim)
    txn = sim.add_transaction(condition="failed", amount="-89.00", decline_code="202")
    delivery = sim.send_webhook("transaction.sale.failure", txn, url=f"{sim.url}/nowhere")
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}

    first = client.post("/hooks/nmi", data=delivery.body, headers=headers)
    again = client.post("/hooks/nmi", data=delivery.body, headers=headers)  # NMI delivers again

    assert first.status_code == 200 and first.json["received"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCase)) == 0
    assert again.status_code == 200 and again.json["duplicate"] is True
    [held] = quarantined(db)
    assert (held.gateway_transaction_id, held.source) == (txn.transaction_id, "webhook")
    assert held.reasons[0]["field"] == "amount"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Transaction)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) == 1


def test_a_fetched_record_and_its_webhook_are_one_quarantine_row(client, db, sim):
    row = account(db, sim)
    txn = sim.add_transaction(condition="failed", currency="ZZZ", decline_code="202")
    assert fetch_account(row.id).result.quarantined == 1
    delivery = sim.send_webhook("transaction.sale.failure", txn, url=f"{sim.url}/nowhere")
    headers = {k: v for k, v in delivery.headers.items() if k.lower() != "content-length"}
    assert client.post("/hooks/nmi", data=delivery.body, headers=headers).json["received"]
    [held] = quarantined(db)
    assert held.times_seen == 2


def test_a_webhook_whose_amount_is_not_one_is_quarantined_not_refused(client, db, sim):
    """An amount the gateway client cannot read at all (not a number) is quarantined the same way: the provider is
    told the event was received, so it does not deliver it again for ever."""
    import json

    account(db, sim)
    txn = sim.add_transaction(condition="failed", decline_code="202")
    envelope = {"event_id": "evt-garbage-amount", "event_type": "transaction.sale.failure",
                "event_body": {**sim.webhook_body("transaction.sale.failure", txn),
                               "action": {"amount": "twelve", "action_type": "sale", "success": "0",
                                          "response_code": "202"}}}
    body = json.dumps(envelope).encode()
    answer = client.post("/hooks/nmi", data=body, headers={"Webhook-Signature": sim.sign(body),
                                                           "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json["received"]
    [held] = quarantined(db)
    assert held.reasons[0]["field"] == "amount" and "not an amount" in held.reasons[0]["problem"]


def test_an_amount_is_read_exactly_or_not_at_all():
    assert record_amount("49.00", "USD") == 4900 and record_amount("4900.00", "JPY") == 4900
    assert record_amount("1.250", "BHD") == 1250
    for text, currency in (("12.345", "USD"), ("12.5", "JPY"), ("", "USD"), (None, "USD"), ("1e999999", "USD"),
                           ("NaN", "USD"), ("12,00", "EUR")):
        with pytest.raises(RecordUnreadable):
            record_amount(text, currency)


def test_text_and_email_rules():
    assert clean_text(" Ana\u2028\u2029María\r\n") == ("Ana María", None)
    assert clean_text("Ana\x00")[1] == "contains the control character U+0000"
    assert clean_text("\u202egnp.exe")[1] == "contains the control character U+202E"
    assert check_email(" Ana@Example.COM ") == ("ana@example.com", None, False)
    assert check_email("ana@example.com\u2028x")[2] is True
    assert check_email("Ana <ana@example.com>")[0] is None


def test_the_simulator_really_sends_what_the_tests_say(sim):
    """The bad values reach Recoup as written (the simulator does not clean them on the way)."""
    txn = sim.add_transaction(condition="failed", customer={"email": "ana@example.com\r\nBcc: x@example.net"},
                              amount="-1.00", currency="XYZ")
    body = requests.post(f"{sim.url}/api/query.php", data={"security_key": sim.security_key,
                                                           "transaction_id": txn.transaction_id}, timeout=10).text
    assert "Bcc: x@example.net" in body and "<amount>-1.00</amount>" in body and "<currency>XYZ</currency>" in body
