"""Decline taxonomy: a gateway's result code (and the card network's advice) -> a reason category and a kind.

The reason says *why* a payment failed in words a policy can branch on; the kind says what may be done
about it:

- ``soft``: the same card may succeed later (retrying, possibly after a wait, is allowed);
- ``hard``: the same card will not succeed unchanged; the customer has to act (new card, new details);
- ``stop``: the cardholder or the issuer asked to stop charging (this card / this recurring program).

NMI does not label its codes soft or hard (except where the text says so, e.g. 261-264), so the split below
is our recommendation (see ``shared/reference/nmi.md`` section 3). Mastercard merchant advice codes (MAC),
when the issuer sends one, override or refine what the result code alone says. Unknown codes are classified
as ``unknown`` and logged, never dropped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)


class DeclineReason(StrEnum):
    insufficient_funds = "insufficient_funds"
    do_not_honor = "do_not_honor"
    expired_card = "expired_card"
    invalid_card_data = "invalid_card_data"
    lost_stolen_fraud = "lost_stolen_fraud"
    stop_recurring = "stop_recurring"
    updated_card_available = "updated_card_available"
    retry_later = "retry_later"
    issuer_unavailable = "issuer_unavailable"
    gateway_error = "gateway_error"
    rate_limited = "rate_limited"
    unknown = "unknown"


class DeclineKind(StrEnum):
    soft = "soft"
    hard = "hard"
    stop = "stop"


@dataclass(frozen=True)
class DeclineInfo:
    """What one failed charge means. ``code`` is the gateway's code, normalised (``None`` when absent)."""

    code: str | None
    reason: DeclineReason
    kind: DeclineKind
    description: str
    merchant_advice_code: str | None = None
    #: the issuer's own "retry after" advice (Mastercard MAC 24-30), in seconds
    retry_after_seconds: int | None = None
    #: the code is an approval (NMI 100), not a decline at all
    approved: bool = False


@dataclass(frozen=True)
class _CodeEntry:
    description: str  # NMI's own wording (Result Code Table)
    reason: DeclineReason
    kind: DeclineKind


_R = DeclineReason
_K = DeclineKind

#: NMI ``response_code`` -> meaning. Descriptions are NMI's Result Code Table text.
NMI_RESPONSE_CODES: dict[str, _CodeEntry] = {
    "200": _CodeEntry("Transaction was declined by processor", _R.do_not_honor, _K.soft),
    "201": _CodeEntry("Do not honor", _R.do_not_honor, _K.soft),
    "202": _CodeEntry("Insufficient funds", _R.insufficient_funds, _K.soft),
    "203": _CodeEntry("Over limit", _R.insufficient_funds, _K.soft),
    "204": _CodeEntry("Transaction not allowed", _R.do_not_honor, _K.hard),
    "220": _CodeEntry("Incorrect payment information", _R.invalid_card_data, _K.hard),
    "221": _CodeEntry("No such card issuer", _R.invalid_card_data, _K.hard),
    "222": _CodeEntry("No card number on file with issuer", _R.invalid_card_data, _K.hard),
    "223": _CodeEntry("Expired card", _R.expired_card, _K.hard),
    "224": _CodeEntry("Invalid expiration date", _R.invalid_card_data, _K.hard),
    "225": _CodeEntry("Invalid card security code", _R.invalid_card_data, _K.hard),
    "226": _CodeEntry("Invalid PIN", _R.invalid_card_data, _K.hard),
    "240": _CodeEntry("Call issuer for further information", _R.do_not_honor, _K.soft),
    "250": _CodeEntry("Pick up card", _R.lost_stolen_fraud, _K.hard),
    "251": _CodeEntry("Lost card", _R.lost_stolen_fraud, _K.hard),
    "252": _CodeEntry("Stolen card", _R.lost_stolen_fraud, _K.hard),
    "253": _CodeEntry("Fraudulent card", _R.lost_stolen_fraud, _K.hard),
    "260": _CodeEntry("Declined with further instructions available", _R.do_not_honor, _K.soft),
    "261": _CodeEntry("Declined - Stop all recurring payments", _R.stop_recurring, _K.stop),
    "262": _CodeEntry("Declined - Stop this recurring program", _R.stop_recurring, _K.stop),
    "263": _CodeEntry("Declined - Update cardholder data available", _R.updated_card_available, _K.hard),
    "264": _CodeEntry("Declined - Retry in a few days", _R.retry_later, _K.soft),
    "300": _CodeEntry("Transaction was rejected by gateway", _R.gateway_error, _K.hard),
    "301": _CodeEntry("Rate limit exceeded", _R.rate_limited, _K.soft),
    "400": _CodeEntry("Transaction error returned by processor", _R.gateway_error, _K.soft),
    "410": _CodeEntry("Invalid merchant configuration", _R.gateway_error, _K.hard),
    "411": _CodeEntry("Merchant account is inactive", _R.gateway_error, _K.hard),
    "420": _CodeEntry("Communication error", _R.issuer_unavailable, _K.soft),
    "421": _CodeEntry("Communication error with issuer", _R.issuer_unavailable, _K.soft),
    "430": _CodeEntry("Duplicate transaction at processor", _R.gateway_error, _K.hard),
    "440": _CodeEntry("Processor format error", _R.gateway_error, _K.hard),
    "441": _CodeEntry("Invalid transaction information", _R.gateway_error, _K.hard),
    "460": _CodeEntry("Processor feature not available", _R.gateway_error, _K.hard),
    "461": _CodeEntry("Unsupported card type", _R.invalid_card_data, _K.hard),
}

NMI_APPROVED = "100"
NMI_APPROVED_DESCRIPTION = "Transaction was approved"

#: codes whose meaning is "see the text": the processor text may say more than the code
_GENERIC_CODES = frozenset({"200", "260"})


@dataclass(frozen=True)
class _AdviceEntry:
    description: str
    reason: DeclineReason | None  # None: keep the reason the result code gave
    kind: DeclineKind | None  # None: keep the kind the result code gave
    retry_after_seconds: int | None = None


_HOUR = 3600
_DAY = 24 * _HOUR

#: Mastercard merchant advice codes (NMI passes them through as ``merchant_advice_code``).
MERCHANT_ADVICE_CODES: dict[str, _AdviceEntry] = {
    "01": _AdviceEntry("New account information available", _R.updated_card_available, _K.hard),
    "02": _AdviceEntry("Cannot approve at this time, try again later", _R.retry_later, _K.soft),
    "03": _AdviceEntry("Do not try again", None, _K.stop),
    "04": _AdviceEntry("Token requirements not fulfilled for this token type", _R.invalid_card_data, _K.hard),
    "05": _AdviceEntry("Negotiated value not approved", None, _K.hard),
    "21": _AdviceEntry("Payment cancellation: stop recurring payment requests", _R.stop_recurring, _K.stop),
    "22": _AdviceEntry("Merchant does not qualify for product code", _R.gateway_error, _K.hard),
    "24": _AdviceEntry("Retry after 1 hour", _R.retry_later, _K.soft, _HOUR),
    "25": _AdviceEntry("Retry after 24 hours", _R.retry_later, _K.soft, _DAY),
    "26": _AdviceEntry("Retry after 2 days", _R.retry_later, _K.soft, 2 * _DAY),
    "27": _AdviceEntry("Retry after 4 days", _R.retry_later, _K.soft, 4 * _DAY),
    "28": _AdviceEntry("Retry after 6 days", _R.retry_later, _K.soft, 6 * _DAY),
    "29": _AdviceEntry("Retry after 8 days", _R.retry_later, _K.soft, 8 * _DAY),
    "30": _AdviceEntry("Retry after 10 days", _R.retry_later, _K.soft, 10 * _DAY),
    "40": _AdviceEntry("Consumer non-reloadable prepaid card", None, _K.hard),
    "41": _AdviceEntry("Consumer single-use virtual card number", None, _K.hard),
    "42": _AdviceEntry("Sanctions score exceeds threshold value", None, _K.stop),
    "43": _AdviceEntry("Consumer multi-use virtual card number", None, _K.hard),
}

#: processor / response text -> reason, for generic codes and for unknown codes. First match wins.
_TEXT_HINTS: tuple[tuple[re.Pattern[str], DeclineReason, DeclineKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason, kind)
    for pattern, reason, kind in (
        (r"stop (all )?recurring|revocation of (all )?authori[sz]ation", _R.stop_recurring, _K.stop),
        (r"\b(lost|stolen|fraud\w*|pick ?up)\b", _R.lost_stolen_fraud, _K.hard),
        (
            r"insufficient|insuff|over ?limit|exceeds? (withdrawal|credit)? ?limit",
            _R.insufficient_funds,
            _K.soft,
        ),
        (r"expired|exp(iration)? date", _R.expired_card, _K.hard),
        (
            r"invalid (card|account|cvv|cvc|pin)|no such (card|issuer|account)|closed",
            _R.invalid_card_data,
            _K.hard,
        ),
        (
            r"issuer (unavailable|not available|inoperative)|system (unavailable|error)|timeout|timed out",
            _R.issuer_unavailable,
            _K.soft,
        ),
        (r"rate limit", _R.rate_limited, _K.soft),
        (r"try again|retry", _R.retry_later, _K.soft),
        (r"do not honou?r|declined?", _R.do_not_honor, _K.soft),
    )
)


def _normalise_code(code: str | int | None) -> str | None:
    if code is None:
        return None
    text = str(code).strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # "²".isdigit() too, and int() refuses it
        return str(int(text))
    return text


def _normalise_advice(code: str | int | None) -> str | None:
    if code is None:
        return None
    text = str(code).strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return text.zfill(2)[-2:] if len(text) <= 2 else text
    return text.upper()


def _from_text(text: str | None) -> tuple[DeclineReason, DeclineKind] | None:
    if not text:
        return None
    for pattern, reason, kind in _TEXT_HINTS:
        if pattern.search(text):
            return reason, kind
    return None


def classify_decline(
    code: str | None,
    merchant_advice_code: str | None = None,
    *,
    gateway: str = "nmi",
    text: str | None = None,
) -> DeclineInfo:
    """Classify one failed charge. Never raises: odd input gives ``unknown`` (and a warning in the log)."""
    norm = _normalise_code(code)
    advice = _normalise_advice(merchant_advice_code)

    if gateway == "nmi" and norm == NMI_APPROVED:
        return DeclineInfo(
            norm, DeclineReason.unknown, DeclineKind.soft, NMI_APPROVED_DESCRIPTION, advice, approved=True
        )

    entry = NMI_RESPONSE_CODES.get(norm) if (gateway == "nmi" and norm is not None) else None
    if entry is not None:
        reason, kind, description = entry.reason, entry.kind, entry.description
        if norm in _GENERIC_CODES:
            hinted = _from_text(text)
            if hinted is not None and hinted[0] is not DeclineReason.do_not_honor:
                reason, kind = hinted
    else:
        hinted = _from_text(text)
        description = text.strip() if text and text.strip() else "Unknown result code"
        if hinted is not None:
            reason, kind = hinted
        else:
            reason, kind = DeclineReason.unknown, _kind_for_unknown(norm, gateway)
        logger.warning(
            "unknown decline code %r from gateway %r (text %r); classified as %s/%s",
            code,
            gateway,
            text,
            reason,
            kind,
        )

    retry_after: int | None = None
    if advice is not None:
        advice_entry = MERCHANT_ADVICE_CODES.get(advice)
        if advice_entry is None:
            logger.warning(
                "unknown merchant advice code %r (decline code %r); ignored", merchant_advice_code, code
            )
        else:
            if advice_entry.reason is not None:
                reason = advice_entry.reason
            elif reason is DeclineReason.unknown and advice_entry.kind is DeclineKind.stop:
                reason = DeclineReason.do_not_honor
            if advice_entry.kind is not None:
                kind = advice_entry.kind
            retry_after = advice_entry.retry_after_seconds
            description = f"{description}; {advice_entry.description}"

    return DeclineInfo(norm, reason, kind, description, advice, retry_after)


def _kind_for_unknown(code: str | None, gateway: str) -> DeclineKind:
    # An NMI 2xx is an issuer decline (some retries may work); 3xx/4xx are gateway/processor errors that will
    # not succeed unchanged. Anything else: assume soft, so the customer does not lose a chance.
    if gateway == "nmi" and code is not None and re.fullmatch(r"[34][0-9][0-9]", code):
        return DeclineKind.hard
    return DeclineKind.soft


def is_retryable(info: DeclineInfo) -> bool:
    """May the same card be charged again (later) without the customer doing anything?"""
    return not info.approved and info.kind is DeclineKind.soft


def documented_nmi_codes() -> frozenset[str]:
    """Every result code NMI documents, the approval included."""
    return frozenset(NMI_RESPONSE_CODES) | {NMI_APPROVED}
