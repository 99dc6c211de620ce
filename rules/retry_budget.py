"""Card-network retry limits: may this card be charged again, and when?

A per-card ledger of charge attempts, checked against limits kept as settings (``RetryLimits``):

- **Visa** (Visa Core Rules, "Decline response code categories and reattempt limits", in force April 2021):
  a *category 1* decline ("issuer will never approve": 04, 07, 12, 15, 41, 43, 46, 57, R0, R1, R3) must
  never be reattempted; other declines may be reattempted at most 15 times per card in 30 days (Visa has
  announced a possible move to 20: set ``visa_max_retries``). Reattempts past the limit incur fees.
- **Mastercard** (Transaction Processing Excellence / Merchant Advice Code Transaction Excellence): never
  retry after merchant advice code 03 ("do not try again") or 21 ("stop recurring"); declines past 35 on one
  card in 30 days are charged, so the budget stops at 35 declines.
- **NMI** result codes 261 ("stop all recurring payments") and 262 ("stop this recurring program") mean stop,
  whatever the network.

The payment-retry work keeps one ``CardRetryBudget`` per card (vault id or card hash), ``record()``s every
attempt, and asks ``decide(now)`` before charging. A stop is final for that card: a new authorization from the
cardholder (a new card, or consent given again on the payment page) starts a new budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class CardNetwork(StrEnum):
    visa = "visa"
    mastercard = "mastercard"
    amex = "amex"
    discover = "discover"
    other = "other"


#: Visa decline category 1 ("issuer will never approve") response codes, ISO 8583 field 39 values.
VISA_CATEGORY_1_CODES = frozenset({"04", "07", "12", "15", "41", "43", "46", "57", "R0", "R1", "R3"})

#: NMI result codes that carry a category-1 meaning (their usual issuer codes in brackets):
#: 204 not allowed (57), 221 no such issuer (15), 250 pick up (04), 251 lost (41), 252 stolen (43),
#: 253 fraudulent card (07, treated as category 1 to be safe), 261/262 stop recurring (R0/R1/R3).
NMI_CATEGORY_1_CODES = frozenset({"204", "221", "250", "251", "252", "253", "261", "262"})


@dataclass(frozen=True)
class RetryLimits:
    """Settings. Defaults follow the rules in the module docstring."""

    visa_max_retries: int = 15
    visa_window: timedelta = timedelta(days=30)
    visa_category_1_codes: frozenset[str] = VISA_CATEGORY_1_CODES
    mastercard_max_declines: int = 35
    mastercard_window: timedelta = timedelta(days=30)
    mastercard_stop_advice_codes: frozenset[str] = frozenset({"03", "21"})
    nmi_stop_codes: frozenset[str] = frozenset({"261", "262"})
    nmi_category_1_codes: frozenset[str] = NMI_CATEGORY_1_CODES
    #: Amex, Discover and unknown networks: no published limit; we hold them to Visa's.
    other_max_retries: int = 15
    other_window: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class ChargeAttempt:
    """One authorization attempt on the card.

    ``code`` is the gateway's result code (NMI ``response_code``); ``issuer_code`` the raw issuer response
    code when the gateway passes it (NMI Query API ``processor_response_code``); ``merchant_advice_code`` the
    Mastercard MAC. ``retry`` is False for the original (scheduled) charge and True for every reattempt.
    """

    at: datetime
    approved: bool
    code: str | None = None
    issuer_code: str | None = None
    merchant_advice_code: str | None = None
    retry: bool = True


@dataclass(frozen=True)
class RetryDecision:
    allowed: bool
    #: "ok", or why not: "visa_category_1", "mastercard_do_not_retry", "stop_recurring",
    #: "visa_retry_limit", "mastercard_decline_limit", "retry_limit"
    reason: str
    #: when the budget allows the next attempt (None when never, or allowed now)
    next_allowed_at: datetime | None = None
    #: attempts left in the current window (None when stopped)
    remaining: int | None = None


def card_network(card_type: str | None = None, bin_or_number: str | None = None) -> CardNetwork:
    """The network from the gateway's card type (NMI ``cc_type``) or, failing that, the BIN."""
    if card_type:
        t = card_type.strip().lower().replace(" ", "")
        for net, names in (
            (CardNetwork.visa, ("visa",)),
            (CardNetwork.mastercard, ("mastercard", "mc", "master")),
            (CardNetwork.amex, ("amex", "americanexpress")),
            (CardNetwork.discover, ("discover",)),
        ):
            if t in names:
                return net
    digits = "".join(ch for ch in (bin_or_number or "") if ch.isdigit())
    if digits.startswith("4"):
        return CardNetwork.visa
    if digits[:2] in {"51", "52", "53", "54", "55"} or (len(digits) >= 4 and 2221 <= int(digits[:4]) <= 2720):
        return CardNetwork.mastercard
    if digits[:2] in {"34", "37"}:
        return CardNetwork.amex
    if digits.startswith("6011") or digits.startswith("65"):
        return CardNetwork.discover
    return CardNetwork.other


def _norm(code: str | None, width: int = 2) -> str | None:
    if code is None:
        return None
    text = str(code).strip().upper()
    if text.isdigit() and len(text) < width:
        text = text.zfill(width)
    return text or None


@dataclass(frozen=True)
class CardRetryBudget:
    """The retry ledger of one card. Immutable: ``record`` returns a new budget."""

    network: CardNetwork
    attempts: tuple[ChargeAttempt, ...] = ()
    limits: RetryLimits = field(default_factory=RetryLimits)

    def record(self, attempt: ChargeAttempt) -> CardRetryBudget:
        return replace(self, attempts=tuple(sorted((*self.attempts, attempt), key=lambda a: a.at)))

    def stop_reason(self) -> str | None:
        """Why this card must never be retried automatically, or None."""
        lim = self.limits
        for a in self.attempts:
            if a.approved:
                continue
            code = _norm(a.code, 3)
            if code in lim.nmi_stop_codes:
                return "stop_recurring"
            if self.network is CardNetwork.mastercard and _norm(a.merchant_advice_code) in (
                lim.mastercard_stop_advice_codes
            ):
                return "mastercard_do_not_retry"
            if self.network is CardNetwork.visa and (
                _norm(a.issuer_code) in lim.visa_category_1_codes or code in lim.nmi_category_1_codes
            ):
                return "visa_category_1"
        return None

    def _window(self) -> tuple[int, timedelta, str]:
        lim = self.limits
        if self.network is CardNetwork.visa:
            return lim.visa_max_retries, lim.visa_window, "visa_retry_limit"
        if self.network is CardNetwork.mastercard:
            return lim.mastercard_max_declines, lim.mastercard_window, "mastercard_decline_limit"
        return lim.other_max_retries, lim.other_window, "retry_limit"

    def _counted(self) -> list[datetime]:
        # Visa (and the others) count reattempts; Mastercard counts every decline, first charges included.
        if self.network is CardNetwork.mastercard:
            return sorted(a.at for a in self.attempts if not a.approved)
        return sorted(a.at for a in self.attempts if a.retry)

    def remaining(self, now: datetime) -> int | None:
        if self.stop_reason() is not None:
            return None
        limit, window, _ = self._window()
        used = sum(1 for at in self._counted() if now - window < at <= now)
        return max(0, limit - used)

    def decide(self, now: datetime) -> RetryDecision:
        """May the card be retried at ``now``? If not, when (or never)?"""
        stop = self.stop_reason()
        if stop is not None:
            return RetryDecision(False, stop)
        limit, window, reason = self._window()
        in_window = [at for at in self._counted() if now - window < at <= now]
        if len(in_window) < limit:
            return RetryDecision(True, "ok", remaining=limit - len(in_window))
        # The next attempt is allowed once enough counted attempts have left the rolling window.
        release = in_window[len(in_window) - limit] + window
        return RetryDecision(False, reason, next_allowed_at=release, remaining=0)
