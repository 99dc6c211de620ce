"""Vault charges, card updates, refunds and order look-ups against the simulator's transact.php."""

import pytest

from app.gateways.base import ChargeOutcomeUnknown, ChargeStatus, GatewayAuthError, GatewayUnavailable
from app.gateways.nmi import from_minor, to_minor
from rules.declines import DeclineKind, DeclineReason

from .conftest import make_gateway


@pytest.fixture
def vault(sim):
    sim.set_vault_outcome("CV-1", None)
    return "CV-1"


def sales(sim):
    return [t for t in sim.transactions if t.sale_action is not None]


def test_customer_initiated_vault_charge_is_approved(sim, gateway, vault):
    result = gateway.charge_vault(vault, 4900, "usd", order_id="INV-1", order_description="Gold")
    assert result.approved and result.status is ChargeStatus.approved
    assert result.transaction_id and result.response_code == "100" and result.decline is None
    assert result.customer_vault_id == vault and result.order_id == "INV-1"
    assert (result.amount_minor, result.currency) == (4900, "USD")
    [sent] = [r.form() for r in sim.received("/api/transact.php")]
    assert sent["type"] == "sale" and sent["customer_vault_id"] == vault and sent["amount"] == "49.00"
    assert sent["initiated_by"] == "customer" and sent["stored_credential_indicator"] == "used"
    assert (
        sent["orderid"] == "INV-1" and sent["currency"] == "USD" and sent["security_key"] == sim.security_key
    )
    assert "initial_transaction_id" not in sent


def test_merchant_initiated_charge_sends_the_initial_transaction(sim, gateway, vault):
    result = gateway.charge_vault(
        vault,
        1500,
        "USD",
        order_id="INV-2",
        initiator="merchant",
        initial_transaction_id="123",
        dup_seconds=300,
    )
    assert result.approved
    [sent] = [r.form() for r in sim.received("/api/transact.php")]
    assert sent["initiated_by"] == "merchant" and sent["initial_transaction_id"] == "123"
    assert sent["dup_seconds"] == "300"


def test_merchant_initiated_without_initial_transaction_is_rejected_by_nmi(sim, gateway, vault):
    result = gateway.charge_vault(vault, 1500, "USD", order_id="INV-3", initiator="merchant")
    assert result.status is ChargeStatus.error and result.response_code == "300"
    assert result.decline.reason is DeclineReason.gateway_error


def test_test_mode_declines_amounts_under_one(sim, gateway, vault):
    result = gateway.charge_vault(vault, 99, "USD", order_id="INV-4")
    assert result.status is ChargeStatus.declined and result.response_code == "200"
    assert result.decline.kind is DeclineKind.soft
    assert sim.transaction(result.transaction_id).condition == "failed"


def test_issuer_decline_with_merchant_advice(sim, gateway):
    sim.set_vault_outcome("CV-9", "202", "24")
    result = gateway.charge_vault("CV-9", 2500, "USD", order_id="INV-5")
    assert result.status is ChargeStatus.declined and result.merchant_advice_code == "24"
    assert result.decline.reason is DeclineReason.retry_later and result.decline.retry_after_seconds == 3600


def test_unknown_vault_is_an_error_result(sim, gateway):
    result = gateway.charge_vault("nope", 2500, "USD", order_id="INV-6")
    assert result.status is ChargeStatus.error and "Vault" in result.response_text


def test_bad_key_on_transact_is_an_auth_error(sim, vault):
    with pytest.raises(GatewayAuthError):
        make_gateway(sim, security_key="wrong").charge_vault(vault, 2500, "USD", order_id="INV-7")


def test_rate_limit_response_code_301_is_retried(sim, gateway, vault):
    sim.inject("rate_limit", count=2, path="/api/transact.php")
    result = gateway.charge_vault(vault, 2500, "USD", order_id="INV-8")
    assert result.approved and len(sim.received("/api/transact.php")) == 3
    assert len([t for t in sales(sim) if t.order_id == "INV-8"]) == 1


def test_rejected_http_statuses_are_retried_without_double_charging(sim, gateway, vault):
    sim.inject("http_429", count=1, path="/api/transact.php")
    sim.inject("http_500", count=1, path="/api/transact.php")
    result = gateway.charge_vault(vault, 2500, "USD", order_id="INV-9")
    assert result.approved
    assert len([t for t in sales(sim) if t.order_id == "INV-9"]) == 1


def test_a_timeout_is_resolved_by_looking_up_the_order_first(sim, gateway, vault):
    sim.inject("timeout", count=1, seconds=2.5, path="/api/transact.php")
    result = gateway.charge_vault(vault, 2500, "USD", order_id="INV-10")
    assert result.approved
    paths = [r.path for r in sim.received()]
    assert paths == ["/api/transact.php", "/api/query.php", "/api/transact.php"]
    assert len([t for t in sales(sim) if t.order_id == "INV-10"]) == 1


def test_a_charge_that_went_through_is_found_not_repeated(sim, gateway, vault):
    first = gateway.charge_vault(vault, 2500, "USD", order_id="INV-11")
    found = gateway.query_order("INV-11")
    assert found.approved and found.transaction_id == first.transaction_id
    assert found.amount_minor == 2500 and found.customer_vault_id == vault


def test_outcome_unknown_when_the_lookup_fails_too(sim, gateway, vault):
    sim.inject("http_500", count=1, path="/api/transact.php")
    sim.inject("http_500", count=10, path="/api/query.php")
    with pytest.raises(ChargeOutcomeUnknown) as info:
        gateway.charge_vault(vault, 2500, "USD", order_id="INV-12")
    assert info.value.order_id == "INV-12"


def test_gateway_down_for_charges(sim, gateway, vault):
    sim.inject("http_503", count=10, path="/api/transact.php")
    with pytest.raises(GatewayUnavailable):
        gateway.charge_vault(vault, 2500, "USD", order_id="INV-13")
    assert sales(sim) == []


def test_query_order_none_and_declined(sim, gateway, vault):
    assert gateway.query_order("NOPE") is None
    gateway.charge_vault(vault, 50, "USD", order_id="INV-14")
    found = gateway.query_order("INV-14")
    assert found.status is ChargeStatus.declined and found.decline is not None


def test_update_card_with_a_single_use_token(sim, gateway, vault):
    before = sim.vault(vault).card.cc_number
    result = gateway.update_vault_card(vault, "tok_abc123")
    assert result.approved and result.customer_vault_id == vault and result.transaction_id is None
    assert sim.vault(vault).card.cc_number != before
    sent = sim.received("/api/transact.php")[-1].form()
    assert sent["customer_vault"] == "update_customer" and sent["payment_token"] == "tok_abc123"
    assert "type" not in sent
    again = gateway.update_vault_card(vault, "tok_abc123")  # single use
    assert again.status is ChargeStatus.error


def test_updating_the_card_clears_a_sticky_decline(sim, gateway):
    sim.set_vault_outcome("CV-5", "223")
    assert (
        gateway.charge_vault("CV-5", 2500, "USD", order_id="INV-15").decline.reason
        is DeclineReason.expired_card
    )
    gateway.update_vault_card("CV-5", "tok_new")
    assert gateway.charge_vault("CV-5", 2500, "USD", order_id="INV-16").approved


def test_refund_full_and_partial(sim, gateway, vault):
    sale = gateway.charge_vault(vault, 5000, "USD", order_id="INV-17")
    partial = gateway.refund(sale.transaction_id, 2000)
    assert partial.approved and partial.transaction_id != sale.transaction_id
    assert sim.received("/api/transact.php")[-1].form()["amount"] == "20.00"
    too_much = gateway.refund(sale.transaction_id, 5000)
    assert too_much.status is ChargeStatus.error
    rest = gateway.refund(sale.transaction_id)
    assert rest.approved and "amount" not in sim.received("/api/transact.php")[-1].form()
    assert gateway.refund("999", 100).status is ChargeStatus.error


def test_money_conversions():
    assert from_minor(4900, "USD") == "49.00" and from_minor(5, "USD") == "0.05"
    assert from_minor(4900, "JPY") == "4900.00"
    assert to_minor("49.00", "USD") == 4900 and to_minor("0.005", "USD") == 1
    assert to_minor("4900.00", "JPY") == 4900


def test_argument_checks(gateway):
    with pytest.raises(ValueError):
        gateway.charge_vault("CV", 0, "USD", order_id="x")
    with pytest.raises(ValueError):
        gateway.charge_vault("CV", 100, "USD", order_id="")
    with pytest.raises(ValueError):
        gateway.charge_vault("CV", 100, "USD", order_id="x", initiator="robot")


def card_token(sim, number):
    token, _ = sim.collect.mint({"ccnumber": number, "ccexp": "1230", "cvv": "123"})
    return token


def test_a_new_card_is_charged_by_its_token_without_touching_the_vault(sim, gateway, vault):
    before = sim.vault(vault).card.cc_number
    declined = gateway.charge_token(card_token(sim, "4000000000000002"), 4900, "usd", order_id="rc1-new-card",
                                    order_description="Gold")
    assert declined.status is ChargeStatus.declined and declined.response_code == "201"
    assert declined.transaction_id and declined.order_id == "rc1-new-card"
    sent = sim.received("/api/transact.php")[-1].form()
    assert sent["type"] == "sale" and sent["payment_token"] and sent["amount"] == "49.00"
    assert sent["initiated_by"] == "customer" and sent["stored_credential_indicator"] == "stored"
    assert "customer_vault_id" not in sent and "customer_vault" not in sent
    assert sim.vault(vault).card.cc_number == before and sim.vault(vault).forced_decline is None
    found = gateway.query_order("rc1-new-card")  # the gateway keeps it as a failed sale with our order id
    assert found.status is ChargeStatus.declined and found.transaction_id == declined.transaction_id


def test_an_approved_new_card_is_stored_from_its_transaction(sim, gateway, vault):
    approved = gateway.charge_token(card_token(sim, "4242424242424242"), 4900, "USD", order_id="rc1-good-card")
    assert approved.approved
    stored = gateway.store_vault_card_from(vault, approved.transaction_id)
    assert stored.approved and stored.customer_vault_id == vault
    sent = sim.received("/api/transact.php")[-1].form()
    assert sent["customer_vault"] == "update_customer" and sent["source_transaction_id"] == approved.transaction_id
    assert sim.vault(vault).card.cc_number == "4xxxxxxxxxxx4242"
    assert gateway.charge_vault(vault, 1000, "USD", order_id="rc1-next").approved
    assert gateway.store_vault_card_from(vault, "999").status is ChargeStatus.error  # no such transaction
