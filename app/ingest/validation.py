"""Every gateway record checked before anything of it is stored (issue 15): what can be cleaned safely is cleaned,
what cannot is refused, with a reason per field.

A refused record is quarantined (:mod:`app.ingest.quarantine`): it opens no case and sends nothing, and the rest of
its batch goes on. The rules, the same for a fetched record and a pushed one:

- **amount**: present and a decimal number (the gateway client reads it, exactly: more decimal places than the
  currency has is unreadable, never rounded), not negative, at most :data:`MAX_AMOUNT_MINOR` minor units;
- **currency**: a known ISO 4217 code (Babel's list; ``XXX`` and ``XTS`` are no money);
- **text** (names, address, order, decline, card and product fields, ids): trimmed, and line breaks, tabs, the line
  and paragraph separators (U+2028, U+2029) and other spaces collapsed into one space; any other control character
  (NUL, ESC, DEL, C1), a lone surrogate or a bidirectional override is refused (there is no safe guess at what was
  meant, and such text is how a header or a message gets forged);
- **email**: trimmed; one address with nothing in it but the address. A line break or control character inside,
  or more than one address, refuses the record; an address that is merely malformed (``ana@example``) is dropped
  and the record kept, with the reason;
- **phone**: one ``phonenumbers`` reads as a valid number (for the billing country), else dropped with the reason;
- **country**: an ISO 3166 alpha-2 code, else dropped; **card expiry**: ``MMYY``, else dropped;
- **times** (failed, occurred, modified): after :data:`EARLIEST` and at most :data:`FUTURE_SLACK` after now.

Pure: no Flask, no database. ``now`` comes from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any

import phonenumbers
from babel import Locale

from app.gateways.base import FailedTransaction, GatewayCustomer, OrderLine, RecordProblem, SaleTransaction
from rules.money import is_currency

#: the largest amount taken in, in minor units (10 billion dollars, a trillion yen): far past any card payment, and
#: far enough from a BIGINT's limit that no sum of them overflows
MAX_AMOUNT_MINOR = 10**12
#: ISO 4217 codes that are no money: "no currency" and "for testing"
NOT_MONEY = frozenset({"XXX", "XTS"})
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: how far ahead of now a gateway's clock may be
FUTURE_SLACK = timedelta(days=1)

#: collapsed into one space: every Unicode space and line break (\t \n \r \v \f, U+0085, U+2028, U+2029, ...)
_SPACES = re.compile(r"\s+")
#: refused: control characters that are no space or line break, lone surrogates, and the bidirectional embeddings,
#: overrides and isolates (they reorder what a reader sees)
_FORBIDDEN_CLASS = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = re.compile(f"[{_FORBIDDEN_CLASS}]")
#: what an email address may not hold anywhere: any of those, or a space other than a plain one
_EMAIL_BREAK = re.compile(f"[{_FORBIDDEN_CLASS}]|[^\\S ]")
_TXN_ID = re.compile(f"[^\\s{_FORBIDDEN_CLASS}]{{1,64}}")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
#: an address nobody could doubt (a subset of what :func:`is_email` accepts), checked first
_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
#: joins a record's texts for :func:`_all_clean` (any printable character would do)
_JOIN = "\u2603"
_LOCAL = re.compile(r"[^\s@,;:<>()\[\]\\\"]{1,64}")
_LABEL = re.compile(r"(?!-)[^\W_](?:[\w-]{0,61}[^\W_])?", re.UNICODE)
_EXPIRY = re.compile(r"(0[1-9]|1[0-2])\d\d")

_CUSTOMER_TEXT = ("customer_id", "first_name", "last_name", "address_1", "city", "region", "postal_code",
                  "card_masked", "card_type")
_RECORD_TEXT = ("order_id", "order_description", "source", "condition")
_FAILED_TEXT = ("decline_code", "decline_text", "merchant_advice_code")
_SALE_TEXT = ("original_transaction_id",)
_FAILED_TEXTS = attrgetter(*_RECORD_TEXT, *_FAILED_TEXT)
_SALE_TEXTS = attrgetter(*_RECORD_TEXT, *_SALE_TEXT)
_CUSTOMER_TEXTS = attrgetter(*_CUSTOMER_TEXT, "phone_raw")
#: codes stored whole in a column of this width: a longer one is no such code (and would not fit)
_WIDTHS = {"decline_code": 16, "merchant_advice_code": 4}


@dataclass(frozen=True)
class Checked:
    """A record after the checks: ``record`` is what may be stored (cleaned), None when ``refused`` says why not;
    ``dropped`` names fields left out of an accepted record, and why."""

    record: Any | None
    refused: tuple[RecordProblem, ...] = ()
    dropped: tuple[RecordProblem, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.record is not None


@dataclass
class _Findings:
    refused: list[RecordProblem] = field(default_factory=list)
    dropped: list[RecordProblem] = field(default_factory=list)

    def refuse(self, name: str, problem: str) -> None:
        self.refused.append(RecordProblem(name, problem))

    def drop(self, name: str, problem: str) -> None:
        self.dropped.append(RecordProblem(name, problem))


def check_record(record: FailedTransaction | SaleTransaction, now: datetime) -> Checked:
    """``record`` checked and cleaned (module docstring); ``now`` is the time it is taken in (aware)."""
    found = _Findings()
    txn_id = record.gateway_transaction_id
    if not txn_id or not _TXN_ID.fullmatch(txn_id):
        found.refuse("transaction_id", "not a transaction id (empty, longer than 64 characters, or with spaces or "
                                       "control characters)")
    _check_amount(record.amount_minor, found)
    currency = record.currency
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha() and currency.isupper()
            and is_currency(currency) and currency not in NOT_MONEY):
        found.refuse("currency", f"{_shown(currency)} is not a known ISO 4217 currency code")
    changes: dict[str, Any] = {}
    for name, width in _WIDTHS.items():
        value = getattr(record, name, None)
        if value is not None and len(value) > width:
            found.refuse(name, f"{_shown(value)} is longer than {width} characters")
    sale = isinstance(record, SaleTransaction)
    texts = _RECORD_TEXT + (_SALE_TEXT if sale else _FAILED_TEXT)
    customer = record.customer
    clean = _all_clean([*(_SALE_TEXTS if sale else _FAILED_TEXTS)(record), *_CUSTOMER_TEXTS(customer),
                        *(t for line in record.products for t in (line.sku, line.description))])
    if not clean:
        for name in texts:
            _clean_into(changes, name, getattr(record, name), found)
    times = ("occurred_at", "modified_at") if sale else ("failed_at", "modified_at")
    for name in times:
        _check_time(name, getattr(record, name), now, found)
    checked = _checked_customer(customer, found, clean)
    if checked is not customer:
        changes["customer"] = checked
    if not clean:
        products = tuple(_checked_line(line, n, found) for n, line in enumerate(record.products, 1))
        if products != record.products:
            changes["products"] = products
    if found.refused:
        return Checked(None, tuple(found.refused), tuple(found.dropped))
    return Checked(replace(record, **changes) if changes else record, (), tuple(found.dropped))


def clean_text(value: str | None) -> tuple[str | None, str | None]:
    """``value`` trimmed with its runs of spaces and line breaks made one space, and the problem when it holds a
    character that cannot be cleaned safely (then the text is None)."""
    if value is None:
        return None, None
    if value.isprintable():  # the common case: nothing but printable characters and plain spaces
        cleaned = _SPACES.sub(" ", value).strip() if "  " in value else value.strip()
        return cleaned or None, None
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        return None, f"contains the control character {_codepoint(bad.group())}"
    cleaned = _SPACES.sub(" ", value).strip()
    return cleaned or None, None


def check_email(value: str | None) -> tuple[str | None, str | None, bool]:
    """``(address, problem, refuse)``: the address (trimmed, lower case) when it is one; else the problem and
    whether the whole record must be refused (a line break, a control character, more than one address) or only
    the address dropped (malformed)."""
    if value is None or not value.strip():
        return None, None, False
    if len(value) <= 254 and _PLAIN_EMAIL.fullmatch(value):  # the common case, at once
        return value.lower(), None, False
    address = value.strip()
    bad = _EMAIL_BREAK.search(address)
    if bad is not None:
        return None, f"contains a line break or control character ({_codepoint(bad.group())})", True
    parts = [p for p in re.split(r"[\s,;]+", address) if p]
    if sum("@" in p for p in parts) > 1 or address.count("@") > 1:
        return None, "more than one address", True
    if not is_email(address):
        return None, f"{_shown(address)} is not an email address", False
    return address.lower(), None, False


def is_email(address: str) -> bool:
    """One address, ``local@domain``, and nothing else: no display name, no spaces, no quoted local part; a domain
    of at least two labels whose last is alphabetic (or IDNA)."""
    if len(address) > 254 or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not _LOCAL.fullmatch(local):
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    top = labels[-1]
    return (len(top) >= 2 and top.isalpha()) or top.lower().startswith("xn--")


def check_phone(raw: str | None, e164: str | None) -> str | None:
    """The problem with a record's phone, or None when it has none or a valid one. The gateway client reads the
    number with ``phonenumbers`` in the billing country (``e164`` is None when it is not a valid number); an E.164
    number that comes without a raw one is read here."""
    if not raw and not e164:
        return None
    if not e164:
        return f"{_shown(raw or '')} is not a phone number phonenumbers reads as valid"
    if not _E164.fullmatch(e164):
        return f"{_shown(e164)} is not an E.164 number"
    if not raw and not _valid_e164(e164):
        return f"{_shown(e164)} is not a valid phone number"
    return None


@lru_cache(maxsize=8192)
def _valid_e164(e164: str) -> bool:
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164) == e164


def problems_as_dicts(problems: Iterable[RecordProblem]) -> list[dict[str, str]]:
    return [p.as_dict() for p in problems]


# -- the pieces ---------------------------------------------------------------------------------------------------


def _check_amount(amount: Any, found: _Findings) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool):
        found.refuse("amount", "no amount")
    elif amount < 0:
        found.refuse("amount", f"negative ({amount} minor units)")
    elif amount > MAX_AMOUNT_MINOR:
        found.refuse("amount", f"more than {MAX_AMOUNT_MINOR:,} minor units ({amount:,})")


def _check_time(name: str, moment: datetime | None, now: datetime, found: _Findings) -> None:
    if moment is None:
        if name != "modified_at":
            found.refuse(name, "no time")
        return
    if moment.tzinfo is None:
        found.refuse(name, "a time without a zone")
    elif moment < EARLIEST:
        found.refuse(name, f"{moment:%Y-%m-%d %H:%M:%S} UTC is before {EARLIEST:%Y-%m-%d}")
    elif moment > now + FUTURE_SLACK:
        found.refuse(name, f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC is in the future")


def _clean_into(changes: dict[str, Any], name: str, value: str | None, found: _Findings) -> None:
    cleaned, problem = clean_text(value)
    if problem:
        found.refuse(name, problem)
    elif cleaned != value:
        changes[name] = cleaned


def _checked_customer(customer: GatewayCustomer, found: _Findings, clean: bool) -> GatewayCustomer:
    """``clean``: its texts are known to need no cleaning (:func:`_all_clean`)."""
    changes: dict[str, Any] = {}
    if not clean:
        for name in _CUSTOMER_TEXT:
            _clean_into(changes, name, getattr(customer, name), found)
    email, problem, refuse = check_email(customer.email)
    if problem and refuse:
        found.refuse("email", problem)
    elif problem:
        found.drop("email", problem)
    if email != customer.email:
        changes["email"] = email
    phone_raw, problem = (customer.phone_raw, None) if clean else clean_text(customer.phone_raw)
    if problem:
        found.refuse("phone", problem)
    else:
        trouble = check_phone(phone_raw, customer.phone_e164)
        if trouble:
            found.drop("phone", trouble)
            changes["phone_raw"] = changes["phone_e164"] = None
        elif phone_raw != customer.phone_raw:
            changes["phone_raw"] = phone_raw
    country = customer.country
    if country is not None:
        code = country.strip().upper()
        if code not in _countries():
            found.drop("country", f"{_shown(country)} is not an ISO 3166 country code")
            changes["country"] = None
        elif code != country:
            changes["country"] = code
    expiry = customer.card_expiry
    if expiry is not None and not _EXPIRY.fullmatch(expiry):
        found.drop("card_expiry", f"{_shown(expiry)} is not a card expiry (MMYY)")
        changes["card_expiry"] = None
    return replace(customer, **changes) if changes else customer


def _checked_line(line: OrderLine, n: int, found: _Findings) -> OrderLine:
    changes: dict[str, Any] = {}
    for name in ("sku", "description"):
        cleaned, problem = clean_text(getattr(line, name))
        if problem:
            found.refuse(f"product.{name}", f"line {n}: {problem}")
        elif cleaned != getattr(line, name):
            changes[name] = cleaned
    return replace(line, **changes) if changes else line


def _all_clean(values: list[str | None]) -> bool:
    """Do all these texts need no cleaning: printable (no control character, line break or separator but a plain
    space), no run of spaces, no space at either end? One pass in C over all of them (a record has twenty)."""
    texts = [v for v in values if v]
    if not texts:
        return True
    joined = _JOIN.join(texts)
    return (joined.isprintable() and "  " not in joined and joined[0] != " " and joined[-1] != " "
            and f" {_JOIN}" not in joined and f"{_JOIN} " not in joined)


def _codepoint(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def _shown(value: str) -> str:
    """A value quoted for a reason: short, with anything unprintable spelled as its code point."""
    text = "".join(ch if ch.isprintable() else _codepoint(ch) for ch in value[:60])
    return repr(text + ("…" if len(value) > 60 else ""))


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha())
