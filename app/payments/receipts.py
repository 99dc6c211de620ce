"""Receipts: the email a customer gets for a payment (through the outbox), and its reference they can read out to
support: ``RC-7K3M-Q9X``.

Derived from the payment's id, so nothing is stored and support finds the payment from the reference alone
(:func:`payment_id_for_reference`). Crockford's base 32 (no I, L, O or U; read back, O is 0 and I or L is 1), the
id scrambled so consecutive payments do not look consecutive, and a last check character that catches nearly any
mistyped or swapped character. Six characters cover a billion payments; past that the reference grows by one.
"""

from __future__ import annotations

import logging
import re
from typing import Any

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "RC"
_WIDTH = 6  # characters before the check character, at least
_MULTIPLIER = 0x2F6B_4E3D  # odd: a bijection modulo any power of two
_OFFSET = 0x1C3A_95E7
_READ_AS = {"O": "0", "I": "1", "L": "1"}
_SHAPE = re.compile(r"^\s*RC[-\s]?([0-9A-Z][0-9A-Z\s-]*)\s*$", re.I)

log = logging.getLogger(__name__)


def receipt_reference(payment_id: int) -> str:
    """``receipt_reference(1) == "RC-XXXX-XXC"``: the payment's reference as printed on the receipt."""
    if payment_id < 1:
        raise ValueError("a payment id is positive")
    width = _WIDTH
    while payment_id >= 32**width:
        width += 1
    modulus = 32**width
    number = (payment_id * _MULTIPLIER + _OFFSET) % modulus
    digits = _encode(number, width)
    body = digits + ALPHABET[_check(digits)]
    return f"{PREFIX}-{body[:4]}-{body[4:]}"


def payment_id_for_reference(reference: str) -> int | None:
    """The payment id a reference stands for, however it was typed (case, spaces, dashes, O for 0); None if it is
    not one of ours or a character is wrong."""
    match = _SHAPE.match(reference or "")
    if match is None:
        return None
    body = "".join(_READ_AS.get(c, c) for c in match.group(1).upper() if c not in " -\t")
    if len(body) < _WIDTH + 1 or any(c not in ALPHABET for c in body):
        return None
    digits, check = body[:-1], body[-1]
    if ALPHABET[_check(digits)] != check:
        return None
    modulus = 32 ** len(digits)
    number = sum(ALPHABET.index(c) * 32**i for i, c in enumerate(reversed(digits)))
    payment_id = ((number - _OFFSET) * pow(_MULTIPLIER, -1, modulus)) % modulus
    if payment_id < 1 or (len(digits) > _WIDTH and payment_id < 32 ** (len(digits) - 1)):
        return None
    return payment_id


def _encode(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rest = divmod(number, 32)
        out.append(ALPHABET[rest])
    return "".join(reversed(out))


def _check(digits: str) -> int:
    """A weighted sum modulo 31 (prime): any one wrong character or two swapped neighbours changes it."""
    return sum((i + 1) * ALPHABET.index(c) for i, c in enumerate(digits)) % 31


# -- the receipt a customer gets by email ------------------------------------------------------------------------
# A receipt is an outbox row like any reminder (channel email, template ``receipt``), so it has events, retries and
# the dispatcher's exactly-once guarantees (the claim, the email checkpoint, reconciliation). Its idempotency key
# names the payment: one receipt per payment, however often the payment is recorded or the request is retried.
RECEIPT_TEMPLATE = "receipt"
_KEY = "receipt:payment:"


def receipt_key(payment_id: int) -> str:
    return f"{_KEY}{payment_id}"


def receipt_payment_id(message: Any) -> int | None:
    """The payment an outbox row is the receipt of (None: the row is no receipt)."""
    key = getattr(message, "idempotency_key", None) or ""
    if getattr(message, "template", None) != RECEIPT_TEMPLATE or not key.startswith(_KEY):
        return None
    return int(key[len(_KEY):])


def is_receipt(message: Any) -> bool:
    return getattr(message, "template", None) == RECEIPT_TEMPLATE


def not_a_receipt() -> Any:
    """The SQL condition that leaves receipts out of a query on outbox rows. A receipt is no reminder: no cadence
    cap counts it (the dispatcher's check at send time, the planner's contact history, an operator's "send now")."""
    from app.models import OutboxMessage

    return OutboxMessage.template.is_distinct_from(RECEIPT_TEMPLATE)


def queue_receipt(payment_id: int) -> int | None:
    """The outbox row of an approved payment's receipt (created once, committed); None when there is nobody to
    send it to."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import MessageEvent, OutboxMessage, Payment, RecoveryCase
    from app.models.types import utcnow
    from app.outbox.states import OutboxState
    from rules.vocabulary import Channel, Priority

    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.state != "approved":
        return None
    case = db.session.get(RecoveryCase, payment.case_id)
    customer = case.customer if case is not None else None
    if case is None or customer is None or not customer.email:
        return None
    key = receipt_key(payment.id)
    existing = db.session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))
    if existing is not None:
        db.session.commit()  # as when it is created: the caller's next read is a fresh one
        return int(existing)
    row = OutboxMessage(
        case_id=case.id, customer_id=customer.id, step_n=None, channel=Channel.EMAIL.value, fallbacks=[],
        address=customer.email, template=RECEIPT_TEMPLATE, locale=customer.locale, priority=Priority.URGENT.value,
        state=OutboxState.SCHEDULED, scheduled_for=utcnow(), deferred_by=[], idempotency_key=key,
    )
    db.session.add(row)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:  # another request recorded the same payment at the same moment
        db.session.rollback()
        return db.session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))
    row_id = row.id  # read before the commit: reading it after would start a transaction (a snapshot) too early
    db.session.add(MessageEvent(message_id=row_id, kind="queued", provider_payload={
        "payment": payment.id, "reference": receipt_reference(payment.id)}))
    db.session.commit()
    return row_id


def send_receipt(payment_id: int) -> int | None:
    """Queue the receipt and ask for it to be sent now (a job on the urgent queue: at once on the in-process queue,
    by the next free worker on RQ). If that fails, the periodic dispatch sends it. Returns the outbox row's id."""
    from app.queue import get_queue
    from rules.vocabulary import Priority
    from workers import jobs

    message_id = queue_receipt(payment_id)
    if message_id is not None:
        try:
            get_queue().enqueue(jobs.send_message, message_id, queue=Priority.URGENT.value)
        except Exception:  # the money has moved: a receipt must never turn the payment into an error
            log.exception("receipt %s of payment %s: sending now failed; the periodic dispatch sends it",
                          message_id, payment_id)
    return message_id


def receipt_email(payment_id: int) -> tuple[str, str]:
    """(subject, text) of a payment's receipt, in the customer's language, from the payment as it is now."""
    from babel import Locale, UnknownLocaleError
    from babel.dates import format_date
    from flask_babel import force_locale
    from flask_babel import gettext as _

    from app.extensions import db
    from app.messages.merchant import merchant_profile
    from app.models import Payment, RecoveryCase
    from app.models.types import utcnow
    from app.payments.charges import customer_zone
    from app.payments.money import format_minor
    from rules.case_states import ACTIVE

    payment = db.session.get(Payment, payment_id)
    case = db.session.get(RecoveryCase, payment.case_id) if payment is not None else None
    customer = case.customer if case is not None else None
    if payment is None or case is None or customer is None:
        raise LookupError(f"payment {payment_id} has no case or customer to write to")
    locale = customer.locale or "en_US"
    brand = merchant_profile()  # the merchant's name and website as the settings say (app.messages.merchant)
    merchant = brand.name
    amount = format_minor(payment.amount_minor, payment.currency, locale)
    paid_at = (payment.completed_at or utcnow()).astimezone(customer_zone(customer, case))
    try:
        paid_on = format_date(paid_at.date(), format="long", locale=locale)
    except (ValueError, LookupError):
        paid_on = format_date(paid_at.date(), format="long", locale="en_US")
    try:
        text_locale = str(Locale.parse(locale))
    except (ValueError, TypeError, UnknownLocaleError):
        text_locale = "en_US"
    with force_locale(text_locale):  # the words follow the customer too (sent outside the page's request)
        description = case.transaction.order_description or _("your order")
        greeting = _("Hi %(name)s,", name=customer.first_name) if customer.first_name else _("Hello,")
        on_file = _("the card on file")
        method = {"vault": on_file, "new_card": _("your new card"), "ach": _("your bank account"),
                  "partial": on_file, "retry": on_file, "scheduled": on_file}
        text = (greeting + "\n\n"
                + _("Thank you. We received your payment of %(amount)s to %(merchant)s for %(description)s on "
                    "%(date)s, paid with %(method)s.", amount=amount, merchant=merchant, description=description,
                    date=paid_on, method=method.get(payment.method) or _("your payment method"))
                + "\n\n" + _("Reference: %(reference)s", reference=receipt_reference(payment.id)) + "\n")
        if case.state in ACTIVE and case.amount_due_minor > 0:
            text += _("Still to pay: %(amount)s.",
                      amount=format_minor(case.amount_due_minor, case.currency, locale)) + "\n"
        text += "\n" + _("Keep this email for your records.") + f"\n{merchant}\n"
        if brand.website_url:
            text += f"{brand.website_url}\n"
        subject = _("Payment received: %(amount)s · %(merchant)s", amount=amount, merchant=merchant)
    return subject, text
