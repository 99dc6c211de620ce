"""Getting paid: the payment page and service against the NMI simulator over real sockets, on SQLite and MariaDB.

Charging once, recovering the case (attribution, cancellations, revoked links, a receipt through the SMTP
simulator), declines in plain words, lost gateway answers resolved with ``query_order``, rate limits, partial
and later payments, and the gateway retries the policy schedules.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from app.accounts.gateway_accounts import save_account
from app.extensions import db
from app.models import MessageEvent, OutboxMessage, Payment, PaymentLink, RecoveryCase
from app.models.types import utcnow
from app.payments.charges import (
    PayMethod,
    PayRequest,
    card_budget,
    good_charge_time,
    latest_decline,
    pay_case,
    payment_options,
    run_due_payment_retries,
)
from app.payments.links import issue_payment_link
from app.payments.receipts import receipt_reference
from app.web.pay import wrong_submissions
from sandbox.nmi.server import NmiSimulator
from sandbox.smtp.server import SmtpSimulator
from tests.builders import make_case, make_customer, make_message, make_transaction

ATTEMPT = "attempt-0000000000000001"


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nmi_server():
    with NmiSimulator(seed=3) as sim:
        yield sim


@pytest.fixture
def nmi(nmi_server):
    nmi_server.clear()
    nmi_server.reset()
    yield nmi_server
    nmi_server.clear()
    nmi_server.reset()


@pytest.fixture(scope="module")
def smtp_server():
    sim = SmtpSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def smtp(smtp_server, app):
    from app.outbox.senders import reset_senders

    smtp_server.reset()
    app.config["SMTP_URL"] = smtp_server.url
    reset_senders(app)
    yield smtp_server
    reset_senders(app)


@pytest.fixture
def paying(app, nmi):
    """Point the app at the simulator (gateway account + Collect.js) and forget earlier throttling."""
    app.config.update(NMI_COLLECT_JS_URL=f"{nmi.url}/token/Collect.js",
                      NMI_TOKENIZATION_KEY=nmi.collect.tokenization_key)
    wrong_submissions.reset()
    account = save_account("nmi-pay", "nmi", credentials={"security_key": nmi.security_key},
                           api_url=f"{nmi.url}/api",
                           settings={"client": {"timeout": 2.0, "max_attempts": 2, "backoff": 0.01,
                                                "max_backoff": 0.02}})
    db.session.commit()
    yield account
    wrong_submissions.reset()


def make_paying_case(account, nmi, *, vault="CV-100", decline_code="202", offers=("partial_payment", "pay_later",
                     "bank_transfer"), terms=None, amount_minor=24900, **case_overrides):
    customer = make_customer(vault_id=vault, card_masked="4xxxxxxxxxxx1111", locale="en_US")
    tx = make_transaction(gateway_account_id=account.id, customer=customer, amount_minor=amount_minor,
                          decline_code=decline_code, order_description="Gold membership",
                          raw={"cc_type": "Visa", "cc_bin": "411111"})
    plan = {"offers": list(offers), "timezone": "America/New_York", "steps": []}
    plan["offer_terms"] = terms if terms is not None else {"pay_later": "P7D"}
    case = make_case(transaction=tx, plan=plan, **case_overrides)
    if vault:
        nmi.set_vault_outcome(vault, None)
    db.session.commit()
    return case


def sales(nmi, vault=None):
    return [t for t in nmi.transactions
            if t.sale_action is not None and (vault is None or t.customer.customer_vault_id == vault)]


def link_for(app, case, message=None):
    token = issue_payment_link(case, app.config["SECRET_KEY"], message_id=message.id if message else None)
    db.session.commit()
    return token


def submit(client, token, method="vault", attempt=ATTEMPT, **fields):
    return client.post(f"/pay/{token}", data={"method": method, "attempt": attempt, **fields})


def fresh(model, id_):
    db.session.expire_all()
    return db.session.get(model, id_)


# -- paying with the card on file --------------------------------------------------------------------------------
def test_card_on_file_recovers_the_case_attributes_it_cancels_the_rest_and_sends_a_receipt(
        app, client, paying, nmi, smtp):
    case = make_paying_case(paying, nmi)
    sent = make_message(case=case, state="sent", variant="B", address=case.customer.email)
    later = make_message(case=case, state="scheduled", step_n=2)
    token = link_for(app, case, sent)

    page = client.get(f"/pay/{token}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "$249.00" in html and "not enough money" in html and "Visa ending 1111" in html
    assert page.headers["Referrer-Policy"] == "no-referrer" and "no-store" in page.headers["Cache-Control"]
    assert f"{nmi.url}/token/Collect.js" in html and "Content-Security-Policy" in page.headers

    answer = submit(client, token, amount="1.00")  # an amount from the browser is ignored
    assert answer.status_code == 303
    done = client.get(answer.headers["Location"])
    assert done.status_code == 200 and "Payment received" in done.get_data(as_text=True)

    [sale] = sales(nmi, "CV-100")
    assert sale.amount == "249.00" and sale.condition == "pendingsettlement"
    [form] = [r.form() for r in nmi.received("/api/transact.php")]
    assert form["initiated_by"] == "customer" and form["stored_credential_indicator"] == "used"
    assert form["orderid"] == f"rc{case.id}-{ATTEMPT}" and form["dup_seconds"] == "900"

    case = fresh(RecoveryCase, case.id)
    assert case.state == "recovered" and case.recovered_amount_minor == 24900
    assert case.recovered_message_id == sent.id
    payment = db.session.scalar(sa.select(Payment).where(Payment.case_id == case.id))
    assert (payment.state, payment.method, payment.message_id) == ("approved", "vault", sent.id)
    assert fresh(OutboxMessage, later.id).state == "cancelled"
    assert all(link.revoked_at is not None for link in db.session.scalars(sa.select(PaymentLink)))
    assert client.get(f"/pay/{token}").status_code == 404  # a settled case's link is closed

    [mail] = smtp.messages
    assert mail["rcpt_tos"] == [case.customer.email] and mail["subject"].startswith("Payment received")
    assert "$249.00" in mail["text"] and receipt_reference(payment.id) in mail["text"]  # a reference people can read


def test_the_link_names_its_message_even_when_the_token_does_not(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    message = make_message(case=case, state="claimed", claimed_at=utcnow() - timedelta(seconds=5))
    token = link_for(app, case)  # as the dispatcher issues it today: no message id in the token
    db.session.add(MessageEvent(message_id=message.id, kind="sent", provider_payload={}))
    db.session.commit()
    client.get(f"/pay/{token}")
    submit(client, token)
    assert fresh(RecoveryCase, case.id).recovered_message_id == message.id
    assert db.session.scalar(sa.select(MessageEvent.kind).where(MessageEvent.message_id == message.id,
                                                                MessageEvent.kind == "link_opened"))


def test_same_attempt_twice_and_a_second_tab_charge_once(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    first = submit(client, token)
    again = submit(client, token)  # a double click / refresh: the same attempt
    other_tab = submit(client, token, attempt="attempt-other-tab-00000001")
    assert len(sales(nmi)) == 1
    assert first.headers["Location"] == again.headers["Location"]  # the same result, even after the link closed
    assert other_tab.status_code == 404  # another attempt after the case was paid: the link is closed
    assert db.session.scalar(sa.select(sa.func.count(Payment.id))) == 1


def test_paying_again_through_the_service_is_already_paid(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    first = pay_case(PayRequest(case.id, PayMethod.card_on_file, ATTEMPT))
    second = pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-second-000000001"))
    assert first.status == "approved" and second.status == "already_paid"
    assert second.payment_id == first.payment_id and len(sales(nmi)) == 1


# -- declines ----------------------------------------------------------------------------------------------------
def test_a_decline_explains_itself_and_says_what_to_try_next(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    later = make_message(case=case, state="scheduled")
    db.session.commit()
    nmi.set_vault_outcome("CV-100", "202")
    token = link_for(app, case)
    answer = submit(client, token)
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "did not go through" in page and "not enough money" in page and "You have not been charged" in page
    assert "Use a different card." in page and "Back to ways to pay" in page
    case = fresh(RecoveryCase, case.id)
    assert case.state == "open" and fresh(OutboxMessage, later.id).state == "scheduled"
    assert db.session.scalar(sa.select(Payment.state)) == "declined"


def test_a_hard_decline_hides_the_card_on_file(app, client, paying, nmi):
    case = make_paying_case(paying, nmi, decline_code="223")  # expired card
    token = link_for(app, case)
    html = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "has expired" in html and 'value="vault"' not in html and "Use a different card" in html
    assert submit(client, token).status_code == 400
    assert sales(nmi) == []


def test_failed_attempts_are_rate_limited_per_case(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    nmi.set_vault_outcome("CV-100", "201")
    token = link_for(app, case)
    for n in range(5):
        assert submit(client, token, attempt=f"attempt-declined-{n:08d}").status_code == 303
    blocked = submit(client, token, attempt="attempt-declined-99999999")
    assert blocked.status_code == 429 and "Please wait" in blocked.get_data(as_text=True)
    assert len(sales(nmi)) == 5


# -- bad links and forms -----------------------------------------------------------------------------------------
def test_tampered_expired_and_unknown_links_learn_nothing(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    expired = link_for(app, case)
    db.session.execute(sa.update(PaymentLink).where(PaymentLink.id == db.session.scalar(
        sa.select(sa.func.max(PaymentLink.id)))).values(expires_at=utcnow() - timedelta(days=1)))
    db.session.commit()
    for bad in (token[:-2] + ("aa" if not token.endswith("aa") else "bb"), expired, "nonsense"):
        for answer in (client.get(f"/pay/{bad}"), submit(client, bad)):
            html = answer.get_data(as_text=True)
            assert answer.status_code == 404 and "not available" in html
            assert "249" not in html and "Gold" not in html and case.customer.first_name not in html
    assert sales(nmi) == []


def test_guessing_links_is_throttled(app, client, paying, nmi):
    for n in range(20):
        assert client.get(f"/pay/guess{n}").status_code == 404
    blocked = client.get("/pay/guess-more")
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0


def test_forms_need_their_csrf_token(app, client, paying, nmi):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        case = make_paying_case(paying, nmi)
        token = link_for(app, case)
        answer = submit(client, token)
        assert answer.status_code == 400 and "could not accept it" in answer.get_data(as_text=True)
        assert sales(nmi) == []
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


# -- a new card, a bank account ----------------------------------------------------------------------------------
def mint(nmi, **fields):
    answer = requests.post(f"{nmi.url}/token/api/tokenize",
                           json={"tokenization_key": nmi.collect.tokenization_key, **fields}, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_new_card_goes_through_a_single_use_token(app, client, paying, nmi):
    case = make_paying_case(paying, nmi, decline_code="223")
    token = link_for(app, case)
    minted = mint(nmi, ccnumber="4111 1111 1111 1111", ccexp="12/30", cvv="123")
    answer = submit(client, token, method="new_card", payment_token=minted["token"], card_last4="1111",
                    card_brand="visa")
    assert answer.status_code == 303
    assert fresh(RecoveryCase, case.id).state == "recovered"
    forms = [r.form() for r in nmi.received("/api/transact.php")]
    # the new card is charged by its token first; only once approved does it replace the card on file
    assert forms[0]["type"] == "sale" and forms[0]["payment_token"] == minted["token"]
    assert forms[0]["initiated_by"] == "customer" and forms[0]["stored_credential_indicator"] == "stored"
    assert "customer_vault_id" not in forms[0] and "customer_vault" not in forms[0]
    [sale] = sales(nmi)
    assert forms[1]["customer_vault"] == "update_customer" and forms[1]["customer_vault_id"] == "CV-100"
    assert forms[1]["source_transaction_id"] == sale.transaction_id and "type" not in forms[1]
    assert not any("ccnumber" in f or "cvv" in f for f in forms)
    assert nmi.vault("CV-100").card.cc_number.endswith("1111")
    # the token is single use: the same token again is refused, not charged
    other = make_paying_case(paying, nmi, vault="CV-101", decline_code="223")
    again = submit(client, link_for(app, other), method="new_card", payment_token=minted["token"],
                   attempt="attempt-reused-token-0001")
    page = client.get(again.headers["Location"]).get_data(as_text=True)
    assert "did not go through" in page and len(sales(nmi)) == 1


def test_a_declining_new_card_leaves_the_case_open(app, client, paying, nmi):
    case = make_paying_case(paying, nmi, decline_code="223")
    minted = mint(nmi, ccnumber="4000000000000002", ccexp="1230", cvv="123")
    answer = submit(client, link_for(app, case), method="new_card", payment_token=minted["token"])
    assert "did not go through" in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert fresh(RecoveryCase, case.id).state == "open"


def vault_card(nmi, vault="CV-100"):
    record = nmi.vault(vault)
    return record.card.cc_number, record.forced_decline


def test_a_declined_new_card_leaves_the_card_on_file_and_one_tap_pay_charges_it(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)  # insufficient funds on the card on file (Visa ending 1111)
    before = vault_card(nmi)
    token = link_for(app, case)
    declining = mint(nmi, ccnumber="4000000000000002", ccexp="1230", cvv="123")
    answer = submit(client, token, method="new_card", payment_token=declining["token"], card_last4="0002",
                    card_brand="visa")
    assert "did not go through" in client.get(answer.headers["Location"]).get_data(as_text=True)
    assert vault_card(nmi) == before  # the vault record keeps its card (and that card's outcome)
    customer = fresh(RecoveryCase, case.id).customer
    assert (customer.vault_id, customer.card_masked) == ("CV-100", "4xxxxxxxxxxx1111")
    assert not any("customer_vault" in r.form() for r in nmi.received("/api/transact.php"))

    html = client.get(f"/pay/{token}").get_data(as_text=True)  # one tap still offers the good card
    assert 'value="vault"' in html and "Visa ending 1111" in html and "ending 0002" not in html
    paid = submit(client, token, method="vault", attempt="attempt-the-good-card-0001")
    assert "Payment received" in client.get(paid.headers["Location"]).get_data(as_text=True)
    last = nmi.received("/api/transact.php")[-1].form()
    assert last["customer_vault_id"] == "CV-100" and last["type"] == "sale"
    assert fresh(RecoveryCase, case.id).state == "recovered"
    states = dict(db.session.execute(sa.select(Payment.method, Payment.state)).tuples().all())
    assert states == {"new_card": "declined", "vault": "approved"}


def test_the_card_on_file_changes_only_after_an_approved_charge(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    before = vault_card(nmi)
    declining = mint(nmi, ccnumber="4000000000009995", ccexp="1230", cvv="123")
    declined = pay_case(PayRequest(case.id, PayMethod.new_card, "attempt-declined-card-001",
                                   payment_token=declining["token"], card_last4="9995", card_brand="visa"))
    assert declined.status == "declined" and vault_card(nmi) == before
    case = fresh(RecoveryCase, case.id)
    assert case.customer.card_masked == "4xxxxxxxxxxx1111" and payment_options(case).card_on_file_usable
    # the declined card is another card: it says nothing about the card on file, nor spends its retry budget
    assert latest_decline(case).code == "202" and len(card_budget(case).attempts) == 1

    good = mint(nmi, ccnumber="4242424242424242", ccexp="1230", cvv="123")
    approved = pay_case(PayRequest(case.id, PayMethod.new_card, "attempt-approved-card-001",
                                   payment_token=good["token"], card_last4="4242", card_brand="visa"))
    assert approved.status == "approved"
    assert nmi.vault("CV-100").card.cc_number == "4xxxxxxxxxxx4242"
    case = fresh(RecoveryCase, case.id)
    assert case.state == "recovered" and case.customer.card_masked == "4xxxxxxxxxxx4242"
    payment = db.session.get(Payment, approved.payment_id)
    assert payment.card_masked == "4xxxxxxxxxxx4242" and payment.gateway_transaction_id


def test_an_approved_new_card_whose_answer_was_lost_becomes_the_card_on_file_when_found(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    good = mint(nmi, ccnumber="4242424242424242", ccexp="1230", cvv="123")
    nmi.inject("slow_response", path="/api/transact.php", seconds=2.5)  # charged, the answer lost
    nmi.inject("http_500", path="/api/query.php", count=2)
    outcome = pay_case(PayRequest(case.id, PayMethod.new_card, "attempt-lost-answer-0001",
                                  payment_token=good["token"], card_last4="4242", card_brand="visa"))
    assert outcome.status == "approved" and len(sales(nmi)) == 1
    assert nmi.vault("CV-100").card.cc_number == "4xxxxxxxxxxx4242"
    assert fresh(RecoveryCase, case.id).customer.card_masked == "4xxxxxxxxxxx4242"


def test_a_bank_account(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    minted = mint(nmi, checkname="Ana Pérez", checkaba="021000021", checkaccount="123456789")
    answer = submit(client, link_for(app, case), method="ach", payment_token=minted["token"], card_last4="6789")
    assert answer.status_code == 303 and fresh(RecoveryCase, case.id).state == "recovered"
    assert nmi.vault("CV-100").card.cc_type == "eCheck"
    assert db.session.scalar(sa.select(Payment.method)) == "ach"


def test_the_tokenizer_refuses_bad_cards_and_keys(nmi):
    bad = requests.post(f"{nmi.url}/token/api/tokenize", timeout=5, json={
        "tokenization_key": nmi.collect.tokenization_key, "ccnumber": "4111111111111112", "ccexp": "1230"})
    assert bad.status_code == 400 and bad.json()["field"] == "ccnumber"
    wrong_key = requests.post(f"{nmi.url}/token/api/tokenize", timeout=5,
                              json={"tokenization_key": "nope", "ccnumber": "4111111111111111", "ccexp": "1230"})
    assert wrong_key.status_code == 401
    script = requests.get(f"{nmi.url}/token/Collect.js", timeout=5)
    assert script.status_code == 200 and "startPaymentRequest" in script.text


# -- lost answers ------------------------------------------------------------------------------------------------
def test_a_lost_answer_is_resolved_with_query_order_and_never_charged_twice(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    nmi.inject("slow_response", path="/api/transact.php", seconds=2.5)  # charged, the answer lost in a timeout
    nmi.inject("http_500", path="/api/query.php", count=2)  # and the client's own look-up fails too
    answer = submit(client, link_for(app, case))
    assert answer.status_code == 303
    assert len(sales(nmi)) == 1
    payment = db.session.scalar(sa.select(Payment))
    assert payment.state == "approved" and fresh(RecoveryCase, case.id).state == "recovered"
    assert len(nmi.received("/api/query.php")) >= 3 and len(nmi.received("/api/transact.php")) == 1


def test_an_unresolved_attempt_blocks_new_charges_until_the_gateway_answers(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    nmi.inject("timeout", path="/api/transact.php", seconds=2.5)  # not processed, answer lost
    nmi.inject("http_500", path="/api/query.php", count=3)
    first = submit(client, token)
    assert "Please do not pay again" in client.get(first.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(sa.select(Payment.state)) == "unknown"
    second = pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-second-tab-000001"))
    assert second.status == "unknown" and len(nmi.received("/api/transact.php")) == 1
    # past the grace period the gateway still has no sale: nothing was charged, a new attempt may go
    report = run_due_payment_retries(utcnow() + timedelta(minutes=3))
    assert report == {"resolved_error": 1}
    third = pay_case(PayRequest(case.id, PayMethod.card_on_file, "attempt-third-0000000001"))
    assert third.status == "approved" and len(sales(nmi)) == 1


# -- part now, the rest later; pay later ---------------------------------------------------------------------------
def test_part_now_and_the_rest_scheduled_then_charged(app, client, paying, nmi):
    case = make_paying_case(paying, nmi, terms={"pay_later": "P7D", "payment_plan": "P14D"})
    reminder = make_message(case=case, state="scheduled")
    db.session.commit()
    token = link_for(app, case)
    html = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "Pay $124.50 now" in html
    done = client.get(submit(client, token, method="partial").headers["Location"]).get_data(as_text=True)
    assert "Payment received" in done and "$124.50" in done and "remaining" in done
    case = fresh(RecoveryCase, case.id)
    assert (case.state, case.amount_due_minor, case.recovered_amount_minor) == ("open", 12450, 12450)
    assert fresh(OutboxMessage, reminder.id).state == "cancelled"
    due = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.channel == "payment_due"))
    assert due.state == "scheduled"
    assert timedelta(days=13) < due.scheduled_for - utcnow() < timedelta(days=15)
    assert "Pay part now" not in client.get(f"/pay/{token}").get_data(as_text=True)

    assert run_due_payment_retries(utcnow()) == {}  # not due yet
    report = run_due_payment_retries(due.scheduled_for + timedelta(minutes=1))
    assert report == {"approved": 1}
    case = fresh(RecoveryCase, case.id)
    assert case.state == "recovered" and case.recovered_amount_minor == 24900
    rest = [r.form() for r in nmi.received("/api/transact.php")][-1]
    assert rest["amount"] == "124.50" and rest["initiated_by"] == "merchant"
    assert rest["initial_transaction_id"] == sales(nmi)[0].transaction_id


def test_pay_later_on_a_date_within_the_policy_limit(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    too_late = (utcnow() + timedelta(days=30)).date().isoformat()
    assert submit(client, token, method="later", pay_on=too_late).status_code == 400
    on = (utcnow() + timedelta(days=3)).date().isoformat()
    done = client.get(submit(client, token, method="later", pay_on=on).headers["Location"])
    assert "Payment scheduled" in done.get_data(as_text=True)
    due = db.session.scalar(sa.select(OutboxMessage).where(OutboxMessage.channel == "payment_due"))
    local = due.scheduled_for.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert local.hour == 9 and local.date().isoformat() == on
    assert sales(nmi) == []
    assert run_due_payment_retries(due.scheduled_for + timedelta(seconds=1)) == {"approved": 1}
    assert fresh(RecoveryCase, case.id).state == "recovered" and len(sales(nmi)) == 1


# -- smart retries -----------------------------------------------------------------------------------------------
def retry_row(case, at):
    return make_message(case=case, channel="payment_retry", template=None, address=None, state="scheduled",
                        scheduled_for=at)


def test_a_due_retry_charges_as_merchant_initiated_after_a_soft_decline(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    row = retry_row(case, utcnow() - timedelta(minutes=1))
    db.session.commit()
    assert run_due_payment_retries() == {"approved": 1}
    [form] = [r.form() for r in nmi.received("/api/transact.php")]
    assert form["initiated_by"] == "merchant" and form["stored_credential_indicator"] == "used"
    assert form["initial_transaction_id"] == case.transaction.gateway_transaction_id
    case = fresh(RecoveryCase, case.id)
    assert case.state == "recovered" and case.recovered_message_id == row.id
    assert fresh(OutboxMessage, row.id).state == "sent"
    assert run_due_payment_retries() == {} and len(sales(nmi)) == 1  # claimed once


@pytest.mark.parametrize("code", ["223", "261", "250"])  # expired (hard), stop recurring, pick up card
def test_no_retry_after_a_hard_or_stop_decline(app, paying, nmi, code):
    case = make_paying_case(paying, nmi, decline_code=code)
    row = retry_row(case, utcnow() - timedelta(minutes=1))
    db.session.commit()
    assert run_due_payment_retries() == {"not_soft": 1}
    assert fresh(OutboxMessage, row.id).state == "cancelled" and nmi.received("/api/transact.php") == []


def test_retries_stay_within_the_card_retry_budget(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    nmi.set_vault_outcome("CV-100", "202")
    now = utcnow()
    for n in range(15):  # Visa: 15 reattempts in 30 days
        db.session.add(Payment(case_id=case.id, order_id=f"old-{n}", method="retry", initiator="merchant",
                               amount_minor=24900, currency="USD", state="declined", response_code="202",
                               created_at=now - timedelta(days=20, hours=n)))
    row = retry_row(case, now - timedelta(minutes=1))
    db.session.commit()
    assert card_budget(case).decide(now).allowed is False
    assert run_due_payment_retries(now) == {"deferred": 1}
    row = fresh(OutboxMessage, row.id)
    assert row.state == "scheduled" and row.scheduled_for > now + timedelta(days=9)
    assert nmi.received("/api/transact.php") == []


def test_a_declined_retry_is_recorded_and_the_case_stays_open(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    nmi.set_vault_outcome("CV-100", "202")
    row = retry_row(case, utcnow() - timedelta(minutes=1))
    db.session.commit()
    assert run_due_payment_retries() == {"declined": 1}
    assert fresh(OutboxMessage, row.id).state == "failed" and fresh(RecoveryCase, case.id).state == "open"


def test_good_charge_time_is_a_local_morning_near_payday():
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    at = good_charge_time(datetime(2026, 3, 10, 20, 0, tzinfo=UTC), ny)  # 16:00 local on the 10th
    assert at.astimezone(ny).hour == 9 and at.astimezone(ny).day == 11
    near_payday = good_charge_time(datetime(2026, 3, 13, 20, 0, tzinfo=UTC), ny)
    assert near_payday.astimezone(ny).day == 15


# -- fifty submits at once ---------------------------------------------------------------------------------------
@pytest.mark.mysql
def test_fifty_concurrent_submits_of_one_payment_charge_once(app, backend, paying, nmi):
    if backend != "mysql":
        pytest.skip("the concurrent-submit test runs on MariaDB (a real per-case lock across connections)")
    case = make_paying_case(paying, nmi)
    token = link_for(app, case)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    barrier = threading.Barrier(50)
    answers: list[int] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        # a double click, refreshes and several tabs: half send the same attempt, half their own
        attempt = ATTEMPT if n % 2 else f"attempt-tab-{n:012d}"
        session = requests.Session()
        barrier.wait(10)
        answer = session.post(f"{base}/pay/{token}", data={"method": "vault", "attempt": attempt},
                              allow_redirects=False, timeout=30)
        with lock:
            answers.append(answer.status_code)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.shutdown()
        server.server_close()
    assert len(answers) == 50
    assert set(answers) <= {303, 404}, answers  # paid, or (once paid and the link revoked) refused
    assert len(sales(nmi, "CV-100")) == 1
    assert len(nmi.received("/api/transact.php")) == 1
    assert db.session.scalar(sa.select(sa.func.count(Payment.id)).where(Payment.state == "approved")) == 1
    assert fresh(RecoveryCase, case.id).state == "recovered"


def test_order_ids_fit_and_are_unique_per_attempt(app, paying, nmi):
    case = make_paying_case(paying, nmi)
    nmi.set_vault_outcome("CV-100", "202")
    a = pay_case(PayRequest(case.id, PayMethod.card_on_file, "a" * 40))
    b = pay_case(PayRequest(case.id, PayMethod.card_on_file, "b" * 40))
    assert a.order_id != b.order_id and len(a.order_id) <= 64
    assert re.fullmatch(r"rc\d+-a{40}", a.order_id)
    assert urlsplit(f"http://x/{a.order_id}").path


def test_the_page_speaks_the_customers_money_and_dates(app, client, paying, nmi):
    case = make_paying_case(paying, nmi)
    case.customer.locale = "de_DE"
    case.customer.timezone = "Europe/Berlin"
    case.currency = "EUR"
    db.session.commit()
    html = client.get(f"/pay/{link_for(app, case)}").get_data(as_text=True)
    assert "249,00\xa0€" in html and "November 2026" in html  # German grouping, symbol and month name
