"""Finding a case from what an operator has at hand: the customer's name, email or phone, the merchant's order id,
a gateway transaction id (the failed payment's, a later failure that joined the case, or a payment made on the
case), or the case number.

One search box, one condition: each kind of match is a lookup the indexes serve (email and order prefixes, exact
ids), and a phone matches however it is typed (``+1 (305) 555-0142``, ``305 555 0142``, ``020 7946 0000``).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from app.models import Customer, Payment, RecoveryCase, Transaction

_DIGITS = re.compile(r"\D+")
#: at least this many digits before a text is also tried as a phone number (fewer match too many)
PHONE_DIGITS = 6


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _escaped(text) + "%"


def _like_within(text: str) -> str:
    return "%" + _escaped(text) + "%"


def case_search(text: str, *, personal: bool = True) -> sa.ColumnElement[bool]:
    """The cases ``text`` finds, as a condition on ``RecoveryCase`` (always false for blank text).

    ``personal=False``: not by the customer's name, email or phone, for a reader who sees those masked
    (app.accounts.pii): the case number, the order id and gateway transaction ids only."""
    q = " ".join(text.split())
    if not q:
        return sa.false()
    ids = sa.or_(Transaction.order_id == q, Transaction.gateway_transaction_id == q)
    found: list[sa.ColumnElement[bool]] = [
        RecoveryCase.customer_id.in_(sa.select(Customer.id).where(_customer(q))) if personal else sa.false(),
        RecoveryCase.transaction_id.in_(sa.select(Transaction.id).where(ids)),
        # a later failure of the same order joins its case (app.ingest.order_cases)
        RecoveryCase.id.in_(sa.select(Transaction.joined_case_id).where(ids, Transaction.joined_case_id.is_not(None))),
        RecoveryCase.id.in_(sa.select(Payment.case_id).where(Payment.gateway_transaction_id == q)),
    ]
    number = q.removeprefix("#")
    if number.isdigit() and len(number) < 19:
        found.append(RecoveryCase.id == int(number))
    return sa.or_(*found)


def _customer(q: str) -> sa.ColumnElement[bool]:
    """Email (from its start), phone (digits, from the end: with or without the country code), or a name: every
    word found in the first or the last name."""
    matches: list[sa.ColumnElement[bool]] = [Customer.email.like(_like_prefix(q.lower()), escape="\\")]
    digits = _DIGITS.sub("", q).lstrip("0")  # a national number's trunk 0 is not in the E.164 form (020... +4420...)
    if len(digits) >= PHONE_DIGITS and not re.search(r"[A-Za-z@]", q):
        matches.append(Customer.phone_e164.like("%" + digits))
    words = q.split(" ")
    if "@" not in q and len(words) <= 4:
        matches.append(sa.and_(*(sa.or_(Customer.first_name.ilike(_like_within(w), escape="\\"),
                                        Customer.last_name.ilike(_like_within(w), escape="\\")) for w in words)))
    return sa.or_(*matches)
