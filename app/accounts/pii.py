"""Customers' personal data, and who sees it whole.

Operators work cases and talk to customers, and admins run the place: they see customers' names, emails, phone
numbers, addresses and what the messages and notes say about them, as stored. Every other role (author, approver,
auditor) sees the same pages with those values masked by the rules below; nothing here hides a row, a count or an
amount, and the audit log and the policies' history stay whole apart from customers' details inside them.

No Flask here: the admin asks :func:`mask_for` for the reader's :class:`Mask` and shows what it returns (pages,
details, CSV exports and the audit log's details go through the same rules).

How each kind is masked:

- ``email``: the first character of the mailbox, then ``***``, then the domain: ``j***@example.com``
- ``phone``: the country code and the last four digits: ``+44 •••• ••3456``
- ``name``: initials: ``Ana Pérez`` -> ``A. P.``
- ``place`` (city, street, company) and ``postal`` (postal code): the first character, then ``•••``
- ``ip``: the network part only: ``203.0.113.•``, ``2001:db8:•``
- ``contact`` (a message's address): an email or a phone, whichever it is
- ``text`` (notes, reasons, a provider's error, a search): every email, phone number and IP address in it masked;
  names in free text cannot be told from other words, so people are asked not to type them there
- ``customer`` (how lists name a customer, ``Ana Pérez <ana@example.com>``): ``A. P. <a***@example.com>``

Search: a reader who sees masked values cannot search by what is masked (name, email, phone): a case is found by
its number, the order id or a gateway transaction id; customers not at all. Otherwise a search would tell them
whether someone is a customer, which is the very thing the mask keeps from them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers

#: the roles that see customers' personal data whole
FULL_ACCESS = frozenset({"admin", "operator"})

DOT = "•"
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
#: something that may be a phone number in free text: 9 digits or more, with the separators people type
_PHONE = re.compile(r"(?<![\w.@/])\+?\(?\d[\d ().-]{7,}\d(?![\w@])")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
#: keys of a stored record (an audit entry's details, an event's payload) that hold a customer's contact or what
#: someone typed about them
CONTACT_KEYS = frozenset({"to", "address", "email", "phone", "from_address"})
TEXT_KEYS = frozenset({"search", "reason", "note", "why", "text", "body", "name", "error"})
#: audit entries about staff accounts: their emails are not customers' personal data, and auditors need them
STAFF_TARGETS = frozenset({"user", "users"})


def sees_personal_data(roles: Iterable[str]) -> bool:
    return bool(FULL_ACCESS & set(roles))


def mask_email(value: str) -> str:
    local, _, domain = value.strip().partition("@")
    if not domain:
        return mask_place(value)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return DOT * 4
    try:
        number = phonenumbers.parse(value if value.strip().startswith("+") else "+" + digits)
        code, national = str(number.country_code), str(number.national_number)
    except phonenumbers.NumberParseException:
        code, national = "", digits
    if len(national) < 7:
        return f"+{code} {DOT * 4}" if code else DOT * 4
    return f"{'+' + code + ' ' if code else ''}{DOT * 4} {DOT * 2}{national[-4:]}"


def mask_name(value: str) -> str:
    if "@" in value:  # a customer with no name is named by their email
        return mask_email(value)
    words = [w for w in re.split(r"[\s,]+", value.strip()) if w[:1].isalpha()]  # no digits, no punctuation
    return " ".join(f"{w[0].upper()}." for w in words) if words else DOT * 3


def mask_place(value: str) -> str:
    value = value.strip()
    return f"{value[:1]}{DOT * 3}" if value else ""


def mask_postal(value: str) -> str:
    return mask_place(value)


def mask_ip(value: str) -> str:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return DOT * 4
    if address.version == 4:
        return ".".join(str(address).split(".")[:3]) + "." + DOT
    return ":".join(address.exploded.split(":")[:2]) + ":" + DOT


def mask_contact(value: str) -> str:
    return mask_email(value) if "@" in value else mask_phone(value)


def _phone_in_text(match: re.Match[str]) -> str:
    found = match.group(0)
    if len(re.sub(r"\D", "", found)) < 9 or _DATE.match(found):
        return found
    return mask_phone(found)


def mask_text(value: str) -> str:
    value = _EMAIL.sub(lambda m: mask_email(m.group(0)), value)
    value = _IPV4.sub(lambda m: mask_ip(m.group(0)), value)
    return _PHONE.sub(_phone_in_text, value)


def mask_customer(customer: Any) -> str:
    """A customer as lists and pickers name them (``Customer.__str__``), masked."""
    named = " ".join(p for p in (getattr(customer, "first_name", None), getattr(customer, "last_name", None)) if p)
    email, phone = getattr(customer, "email", None), getattr(customer, "phone_e164", None)
    if named and email:
        return f"{mask_name(named)} <{mask_email(email)}>"
    if named:
        return mask_name(named)
    if email:
        return mask_email(email)
    if phone:
        return mask_phone(phone)
    return f"customer {getattr(customer, 'id', '?')}"


MASKS = {"email": mask_email, "phone": mask_phone, "name": mask_name, "place": mask_place, "postal": mask_postal,
         "ip": mask_ip, "contact": mask_contact, "text": mask_text}


def mask_record(value: Any) -> Any:
    """A stored record (JSON: an audit entry's details, an event's payload) with its customers' details masked:
    the values under :data:`CONTACT_KEYS` and :data:`TEXT_KEYS`, at any depth. Everything else as it is."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, str) and key in CONTACT_KEYS:
                out[key] = mask_contact(item)
            elif isinstance(item, str) and key in TEXT_KEYS:
                out[key] = mask_text(item)
            else:
                out[key] = mask_record(item)
        return out
    if isinstance(value, list):
        return [mask_record(v) for v in value]
    return value


@dataclass(frozen=True)
class Mask:
    """What one reader sees of customers' personal data: ``full`` -> everything as stored; else masked."""

    full: bool

    def value(self, kind: str, value: Any) -> Any:
        """``value`` of ``kind`` (one of :data:`MASKS`, or ``customer`` for a customer row) as this reader sees it.
        Empty values, and values of other types, pass as they are."""
        if self.full or value is None or value == "":
            return value
        if kind == "customer":
            return mask_customer(value)
        if isinstance(value, list | tuple):
            return [self.value(kind, v) for v in value]
        if not isinstance(value, str):
            return value
        return MASKS[kind](value)

    def email(self, value: Any) -> Any:
        return self.value("email", value)

    def phone(self, value: Any) -> Any:
        return self.value("phone", value)

    def name(self, value: Any) -> Any:
        return self.value("name", value)

    def place(self, value: Any) -> Any:
        return self.value("place", value)

    def contact(self, value: Any) -> Any:
        return self.value("contact", value)

    def text(self, value: Any) -> Any:
        return self.value("text", value)

    def customer(self, value: Any) -> Any:
        return self.value("customer", value)

    def record(self, value: Any) -> Any:
        return value if self.full else mask_record(value)

    def audit_details(self, target_type: str | None, details: Any) -> Any:
        """An audit entry's details: whole for staff accounts' entries, customers' details masked in the rest."""
        return details if target_type in STAFF_TARGETS else self.record(details)


FULL = Mask(True)
MASKED = Mask(False)


def mask_for(roles: Iterable[str]) -> Mask:
    return FULL if sees_personal_data(roles) else MASKED
