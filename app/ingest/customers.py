"""Ingest's customers: each gateway record's customer matched (gateway customer id, else email, else phone; else a
customer of the record's own), filled in with what the gateway knows, and stored in a few set-based statements.

A chunk's customers take one SELECT per kind of key, one INSERT for the new ones and one UPDATE per set of changed
fields for the others (each row's values by its id: :func:`app.writes.per_row`): no ORM objects, and no statement
per customer, so thousands of customers cost a handful of round trips. Newer records win for
contact data, what a record leaves out is kept, and an operator's choices stay (a timezone or a locale set by
hand). A guessed locale follows the country (:mod:`app.ingest.customer_locale`), and so do the customer's waiting
messages.
No Flask here; the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.gateways.base import FailedTransaction, SaleTransaction
from app.ingest.customer_locale import LocaleSource, carry_to_waiting_messages, followed_locale
from app.models import Customer
from app.writes import UNCACHED, per_row
from rules.timing import TimezoneGuess, detect_timezone

CustomerKey = tuple[str, str]

#: contact fields a record fills in when it has them, with their column widths
_CONTACT = {
    "first_name": 100,
    "last_name": 100,
    "phone_e164": 20,
    "phone_raw": 40,
    "city": 100,
    "postal_code": 20,
    "card_masked": 24,
}
#: what ingest writes on a stored customer (the rest is the operator's, or the payment history's)
_WRITTEN = (
    "gateway_customer_id", "vault_id", *_CONTACT, "email", "country", "region", "card_expiry", "locale",
    "locale_source", "timezone", "timezone_candidates", "timezone_source", "timezone_confidence", "first_seen_at",
    "last_seen_at",
)
_READ = ("id", "timezone_explicit", "successful_payments", *_WRITTEN)
_NEW = {**dict.fromkeys(_READ), "successful_payments": 0}
_NEW_DEFAULTS = {"successful_payments": 0, "failed_payments": 0, "lifetime_value_minor": 0, "tags": [], "vip": False}


@dataclass(frozen=True)
class ChunkCustomers:
    ids: dict[CustomerKey, int]  # by customer key (:func:`customer_key`)
    created: int
    paying: frozenset[int]  # stored customers with at least one successful payment
    new_ids: frozenset[int] = frozenset()  # the customers inserted now (with their ``failures``, when given)


def customer_key(record: FailedTransaction | SaleTransaction) -> CustomerKey:
    c = record.customer
    if c.customer_id:
        return ("id", c.customer_id)
    if c.email:
        return ("email", c.email.strip().lower())
    if c.phone_e164:
        return ("phone", c.phone_e164)
    return ("tx", record.gateway_transaction_id)  # nothing to match on: a customer of its own


def occurred_at(record: FailedTransaction | SaleTransaction) -> datetime:
    return record.occurred_at if isinstance(record, SaleTransaction) else record.failed_at


def upsert_customers(
    records: Sequence[FailedTransaction | SaleTransaction], account_id: int,
    *, failures: Mapping[CustomerKey, int] | None = None,
) -> ChunkCustomers:
    """Store the customers of ``records`` (new ones inserted, stored ones updated where the newest record says
    something new) and return their ids by customer key. ``failures``: how many failed payments of each customer
    the caller stores with them in the same transaction; a new customer is inserted with that count (a stored
    one's count is the caller's to add)."""
    latest = {customer_key(r): r for r in sorted(records, key=lambda r: r.modified_at)}
    earliest: dict[CustomerKey, datetime] = {}
    for r in records:
        key, at = customer_key(r), occurred_at(r)
        if key not in earliest or at < earliest[key]:
            earliest[key] = at
    stored = _stored_customers(latest, account_id)
    new_keys: list[CustomerKey] = []
    new_rows: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    moved: list[tuple[int, str]] = []
    for key, record in latest.items():
        before = stored.get(key)
        after = customer_fields(before or _NEW, record, earliest[key])
        if before is None:
            new_keys.append(key)
            new_rows.append({**_NEW_DEFAULTS, **{f: after[f] for f in _WRITTEN}, "gateway_account_id": account_id,
                             "failed_payments": failures.get(key, 0) if failures else 0})
            continue
        changed = {f: after[f] for f in _WRITTEN if after[f] != before[f]}
        if changed:
            updates.setdefault(tuple(sorted(changed)), []).append((before["id"], changed))
        if "locale" in changed:
            moved.append((before["id"], changed["locale"]))
    ids = {key: row["id"] for key, row in stored.items()}
    table = Customer.__table__
    new_ids: list[int] = []
    if new_rows:
        inserted = db.session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), new_rows)
        new_ids = list(inserted.scalars())
        ids.update(zip(new_keys, new_ids, strict=True))
    for fields, rows in updates.items():
        db.session.execute(
            table.update()
            .where(table.c.id.in_([customer_id for customer_id, _ in rows]))
            .values({f: per_row(table.c.id, {cid: changed[f] for cid, changed in rows}, table.c[f].type, f)
                     for f in fields}),
            execution_options=UNCACHED,
        )
    for customer_id, locale in moved:
        carry_to_waiting_messages(customer_id, locale)
    paying = frozenset(row["id"] for row in stored.values() if row["successful_payments"])
    return ChunkCustomers(ids, len(new_rows), paying, frozenset(new_ids))


def _stored_customers(keys: Mapping[CustomerKey, Any], account_id: int) -> dict[CustomerKey, dict[str, Any]]:
    """The stored customers the keys match, as plain rows: by gateway customer id; by email among those without
    one; by phone among those with neither."""
    found: dict[CustomerKey, dict[str, Any]] = {}
    ids = [k[1] for k in keys if k[0] == "id"]
    emails = [k[1] for k in keys if k[0] == "email"]
    phones = [k[1] for k in keys if k[0] == "phone"]
    base = sa.select(*(getattr(Customer, f) for f in _READ)).where(Customer.gateway_account_id == account_id)
    if ids:
        for row in db.session.execute(base.where(Customer.gateway_customer_id.in_(ids))).mappings():
            found[("id", row["gateway_customer_id"] or "")] = dict(row)
    if emails:
        query = base.where(Customer.email.in_(emails), Customer.gateway_customer_id.is_(None))
        for row in db.session.execute(query).mappings():
            found.setdefault(("email", (row["email"] or "").lower()), dict(row))
    if phones:
        query = base.where(
            Customer.phone_e164.in_(phones), Customer.gateway_customer_id.is_(None), Customer.email.is_(None)
        )
        for row in db.session.execute(query).mappings():
            found.setdefault(("phone", row["phone_e164"] or ""), dict(row))
    return found


def customer_fields(
    before: Mapping[str, Any], record: FailedTransaction | SaleTransaction, earliest: datetime
) -> dict[str, Any]:
    """A customer's fields once ``record`` (the newest of theirs in the chunk) is taken in; ``earliest`` is when
    their earliest record in the chunk happened. A record older than what was seen last changes only the first-seen
    time."""
    after = dict(before)
    after["first_seen_at"] = min(filter(None, (before["first_seen_at"], occurred_at(record), earliest)))
    if before["last_seen_at"] is not None and record.modified_at < before["last_seen_at"]:
        return after
    c = record.customer
    after["gateway_customer_id"] = c.customer_id or before["gateway_customer_id"]
    after["vault_id"] = c.customer_id or before["vault_id"]
    for attr, width in _CONTACT.items():
        value = getattr(c, attr)
        if value:
            after[attr] = value[:width]
    if c.email:
        after["email"] = c.email.strip().lower()[:254]
    if c.country:
        after["country"] = c.country.upper()[:2]
    if c.region:
        after["region"] = c.region.upper()[:64]
    if c.card_expiry:
        after["card_expiry"] = c.card_expiry[:7]
    country_changed = before["country"] is not None and after["country"] != before["country"]
    guessed = followed_locale(
        before["locale"], before["locale_source"], after["country"], country_changed=country_changed
    )
    if guessed is not None:
        after["locale"], after["locale_source"] = guessed, LocaleSource.GUESSED.value
    guess = _zone_guess(
        after["timezone_explicit"], after["country"], after["region"], after["postal_code"], after["phone_e164"]
    )
    after["timezone_candidates"] = list(guess.zones)
    after["timezone"] = guess.zones[0] if guess.zones else None  # the zone shown; every candidate is respected
    after["timezone_source"] = guess.source
    after["timezone_confidence"] = Decimal(str(round(guess.confidence, 3)))
    if before["id"] is None:  # a returning customer's last-seen time is recomputed per chunk from their rows
        after["last_seen_at"] = record.modified_at
    return after


@lru_cache(maxsize=65536)
def _zone_guess(
    explicit: str | None, country: str | None, region: str | None, postal_code: str | None, phone: str | None
) -> TimezoneGuess:
    return detect_timezone(explicit=explicit, country=country, region=region, postal_code=postal_code, phone=phone)
