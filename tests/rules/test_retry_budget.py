"""Card-network retry limits: Visa category 1 and 15 (or 20) per 30 days, Mastercard MAC 03/21 and
35 declines, NMI 261/262."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rules.retry_budget import (
    CardNetwork,
    CardRetryBudget,
    ChargeAttempt,
    RetryLimits,
    card_network,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def declines(
    network: CardNetwork,
    n: int,
    *,
    code: str = "202",
    every: timedelta = timedelta(hours=12),
    limits: RetryLimits | None = None,
) -> CardRetryBudget:
    budget = CardRetryBudget(network, limits=limits or RetryLimits())
    budget = budget.record(ChargeAttempt(T0, approved=False, code=code, retry=False))
    for i in range(1, n + 1):
        budget = budget.record(ChargeAttempt(T0 + i * every, approved=False, code=code))
    return budget


def test_card_network() -> None:
    assert card_network("Visa") is CardNetwork.visa
    assert card_network("mastercard") is CardNetwork.mastercard
    assert card_network(None, "4111111111111111") is CardNetwork.visa
    assert card_network(None, "543111") is CardNetwork.mastercard
    assert card_network(None, "222100") is CardNetwork.mastercard
    assert card_network(None, "341111") is CardNetwork.amex
    assert card_network(None, "601100") is CardNetwork.discover
    assert card_network("", "") is CardNetwork.other


@pytest.mark.parametrize(
    "issuer_code", ["04", "07", "12", "15", "41", "43", "46", "57", "R0", "R1", "R3", "4"]
)
def test_visa_category_1_is_never_retried(issuer_code: str) -> None:
    budget = CardRetryBudget(CardNetwork.visa).record(
        ChargeAttempt(T0, approved=False, code="200", issuer_code=issuer_code, retry=False)
    )
    decision = budget.decide(T0 + timedelta(days=60))
    assert not decision.allowed and decision.reason == "visa_category_1"
    assert decision.next_allowed_at is None and budget.remaining(T0) is None


@pytest.mark.parametrize("code", ["250", "251", "252", "204"])
def test_visa_category_1_from_nmi_codes(code: str) -> None:
    budget = CardRetryBudget(CardNetwork.visa).record(
        ChargeAttempt(T0, approved=False, code=code, retry=False)
    )
    assert budget.decide(T0 + timedelta(days=1)).reason == "visa_category_1"


def test_visa_soft_declines_are_retried_up_to_15_in_30_days() -> None:
    budget = declines(CardNetwork.visa, 14)
    now = T0 + timedelta(days=8)
    ok = budget.decide(now)
    assert ok.allowed and ok.remaining == 1
    budget = budget.record(ChargeAttempt(now, approved=False, code="202"))
    no = budget.decide(now + timedelta(minutes=1))
    assert not no.allowed and no.reason == "visa_retry_limit" and no.remaining == 0
    # The first retry (T0 + 12 h) leaves the rolling window 30 days later.
    assert no.next_allowed_at == T0 + timedelta(hours=12) + timedelta(days=30)
    assert budget.decide(no.next_allowed_at).allowed


def test_visa_limit_is_a_setting() -> None:
    limits = replace(RetryLimits(), visa_max_retries=20)
    budget = declines(CardNetwork.visa, 15, limits=limits)
    decision = budget.decide(T0 + timedelta(days=9))
    assert decision.allowed and decision.remaining == 5


def test_mastercard_stops_on_advice_codes_03_and_21() -> None:
    for mac in ("03", "21", "3"):
        budget = CardRetryBudget(CardNetwork.mastercard).record(
            ChargeAttempt(T0, approved=False, code="200", merchant_advice_code=mac, retry=False)
        )
        assert budget.decide(T0 + timedelta(days=40)).reason == "mastercard_do_not_retry"
    # Another network's advice code does not stop a Visa card.
    visa = CardRetryBudget(CardNetwork.visa).record(
        ChargeAttempt(T0, approved=False, code="202", merchant_advice_code="03", retry=False)
    )
    assert visa.decide(T0 + timedelta(hours=1)).allowed


def test_mastercard_allows_35_declines_in_30_days() -> None:
    budget = declines(CardNetwork.mastercard, 33, every=timedelta(hours=6))  # 34 declines incl. the first
    now = T0 + timedelta(days=9)
    assert budget.decide(now).allowed and budget.decide(now).remaining == 1
    budget = budget.record(ChargeAttempt(now, approved=False, code="202"))
    decision = budget.decide(now + timedelta(minutes=1))
    assert not decision.allowed and decision.reason == "mastercard_decline_limit"
    assert decision.next_allowed_at == T0 + timedelta(days=30)


def test_nmi_261_262_stop_recurring_on_any_network() -> None:
    for code in ("261", "262"):
        for network in CardNetwork:
            budget = CardRetryBudget(network).record(
                ChargeAttempt(T0, approved=False, code=code, retry=False)
            )
            assert budget.decide(T0 + timedelta(days=90)).reason == "stop_recurring"


def test_approvals_do_not_count_against_mastercard_and_first_charges_not_against_visa() -> None:
    budget = CardRetryBudget(CardNetwork.mastercard)
    for i in range(50):
        budget = budget.record(ChargeAttempt(T0 + timedelta(hours=i), approved=True, retry=False))
    assert budget.decide(T0 + timedelta(days=3)).remaining == 35
    visa = CardRetryBudget(CardNetwork.visa)
    for i in range(50):
        visa = visa.record(ChargeAttempt(T0 + timedelta(hours=i), approved=False, code="202", retry=False))
    assert visa.decide(T0 + timedelta(days=3)).remaining == 15


def test_other_networks_use_the_default_budget() -> None:
    budget = declines(CardNetwork.amex, 15)
    decision = budget.decide(T0 + timedelta(days=8))
    assert not decision.allowed and decision.reason == "retry_limit"
