"""NMI Query API XML, written incrementally.

Every ``<transaction>`` carries every element, in NMI's order, with empty elements for blanks (clients
often ``find('x').text`` and would crash on a missing tag); ``<product>`` and ``<action>`` are repeated
siblings with no wrapper; dates are ``YYYYMMDDhhmmss`` UTC. The document is produced as a generator of
byte chunks, so a page of 100,000 records is never built in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sandbox.nmi.population import Action, Product, Transaction

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
CHUNK_BYTES = 64 * 1024

TRANSACTION_FIELDS = (
    "transaction_id", "partial_payment_id", "partial_payment_balance", "platform_id", "transaction_type",
    "condition", "order_id", "authorization_code", "ponumber", "order_description", "first_name", "last_name",
    "address_1", "address_2", "company", "city", "state", "postal_code", "country", "email", "phone", "fax",
    "cell_phone", "customertaxid", "customerid", "website", "shipping_first_name", "shipping_last_name",
    "shipping_address_1", "shipping_address_2", "shipping_company", "shipping_city", "shipping_state",
    "shipping_postal_code", "shipping_country", "shipping_email", "shipping_carrier", "tracking_number",
    "shipping_date", "shipping", "shipping_phone", "cc_number", "cc_hash", "cc_exp", "cavv", "cavv_result",
    "xid",
    "eci", "directory_server_id", "three_ds_version", "avs_response", "csc_response", "cardholder_auth",
    "cc_start_date", "cc_issue_number", "check_account", "check_hash", "check_aba", "check_name",
    "account_holder_type", "account_type", "sec_code", "drivers_license_number", "drivers_license_state",
    "drivers_license_dob", "social_security_number", "processor_id", "tax", "currency", "surcharge", "tip",
    "card_balance", "card_available_balance", "entry_mode", "cc_bin", "cc_type",
)  # fmt: skip

ACTION_FIELDS = (
    "amount", "action_type", "date", "success", "ip_address", "source", "api_method", "username",
    "response_text", "batch_id", "processor_batch_id", "response_code", "processor_response_text",
    "processor_response_code", "requested_amount", "device_license_number", "device_nickname",
)  # fmt: skip

PRODUCT_FIELDS = ("sku", "quantity", "description", "amount")

_TX_TAGS = [(f"    <{name}>", f"</{name}>\n") for name in TRANSACTION_FIELDS]
_ACTION_TAGS = [(f"      <{name}>", f"</{name}>\n") for name in ACTION_FIELDS]
_PRODUCT_TAGS = [(f"      <{name}>", f"</{name}>\n") for name in PRODUCT_FIELDS]


def nmi_date(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S")


def escape(text: str) -> str:
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def transaction_values(txn: Transaction, *, order_description: str | None = None) -> list[str]:
    c = txn.customer
    card = c.card
    values = {
        "transaction_id": txn.transaction_id,
        "transaction_type": "cc",
        "condition": txn.condition,
        "order_id": txn.order_id,
        "authorization_code": txn.authorization_code,
        "order_description": txn.order_description if order_description is None else order_description,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "address_1": c.address_1,
        "company": c.company,
        "city": c.city,
        "state": c.state,
        "postal_code": c.postal_code,
        "country": c.country,
        "email": c.email,
        "phone": c.phone,
        "customerid": c.customer_vault_id or "",
        "shipping": "0.00",
        "cc_number": card.cc_number,
        "cc_hash": card.cc_hash,
        "cc_exp": card.cc_exp,
        "avs_response": txn.avs_response,
        "csc_response": txn.csc_response,
        "processor_id": txn.processor_id,
        "tax": "0.00",
        "currency": txn.currency,
        "entry_mode": txn.entry_mode,
        "cc_bin": card.cc_bin,
        "cc_type": card.cc_type,
    }
    return [values.get(name, "") for name in TRANSACTION_FIELDS]


def action_values(action: Action) -> list[str]:
    return [
        action.amount,
        action.action_type,
        nmi_date(action.date),
        "1" if action.success else "0",
        action.ip_address,
        action.source,
        action.api_method,
        action.username,
        action.response_text,
        action.batch_id,
        action.processor_batch_id,
        action.response_code,
        action.processor_response_text,
        action.processor_response_code,
        action.requested_amount,
        "",
        "",
    ]


def product_values(product: Product) -> list[str]:
    return [product.sku, product.quantity, product.description, product.amount]


def render_transaction(txn: Transaction, *, order_description: str | None = None) -> str:
    parts = ["  <transaction>\n"]
    values = transaction_values(txn, order_description=order_description)
    for (open_tag, close_tag), value in zip(_TX_TAGS, values, strict=True):
        parts.append(f"{open_tag}{escape(value)}{close_tag}" if value else f"{open_tag}{close_tag}")
    for product in txn.products:
        parts.append("    <product>\n")
        for (open_tag, close_tag), value in zip(_PRODUCT_TAGS, product_values(product), strict=True):
            parts.append(f"{open_tag}{escape(value)}{close_tag}")
        parts.append("    </product>\n")
    for action in txn.actions:
        parts.append("    <action>\n")
        for (open_tag, close_tag), value in zip(_ACTION_TAGS, action_values(action), strict=True):
            parts.append(f"{open_tag}{escape(value)}{close_tag}" if value else f"{open_tag}{close_tag}")
        parts.append("    </action>\n")
    parts.append("  </transaction>\n")
    return "".join(parts)


def render_document(
    transactions: Iterable[Transaction], *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The whole response, in chunks of about ``chunk_bytes``; an empty result is an empty root."""
    iterator = iter(transactions)
    first = next(iterator, None)
    if first is None:
        yield f"{XML_DECLARATION}<nm_response></nm_response>\n".encode()
        return
    buffer = [XML_DECLARATION, "<nm_response>\n", render_transaction(first)]
    size = sum(len(part) for part in buffer)
    for txn in iterator:
        text = render_transaction(txn)
        buffer.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield "".join(buffer).encode()
            buffer.clear()
            size = 0
    buffer.append("</nm_response>\n")
    yield "".join(buffer).encode()


def error_document(text: str) -> bytes:
    body = f"<nm_response>\n  <error_response>{escape(text)}</error_response>\n</nm_response>\n"
    return (XML_DECLARATION + body).encode()


# -- faults ------------------------------------------------------------------------------------------------
def truncated_document(transactions: Iterable[Transaction]) -> Iterator[bytes]:
    """A document cut mid-record, as a dropped connection or a proxy limit leaves it (HTTP ends cleanly)."""
    items = list(_take(transactions, 4))
    yield (XML_DECLARATION + "<nm_response>\n").encode()
    for txn in items[:-1]:
        yield render_transaction(txn).encode()
    if items:
        text = render_transaction(items[-1])
        yield text[: len(text) // 2].encode()


def malformed_document(transactions: Iterable[Transaction]) -> Iterator[bytes]:
    items = list(_take(transactions, 2))
    yield (XML_DECLARATION + "<nm_response>\n").encode()
    for txn in items:
        yield render_transaction(txn).encode()
    yield b"  <transaction>\n    <transaction_id>1</transaction_idx>\n  </transaction>\n</nm_response>\n"


def entity_bomb_document() -> bytes:
    """The "billion laughs": a DTD whose entities expand exponentially."""
    lines = [XML_DECLARATION, '<!DOCTYPE nm_response [\n  <!ENTITY lol "lol">\n']
    for n in range(1, 10):
        previous = "lol" if n == 1 else f"lol{n - 1}"
        lines.append(f'  <!ENTITY lol{n} "{("&" + previous + ";") * 10}">\n')
    lines.append("]>\n<nm_response><error_response>&lol9;</error_response></nm_response>\n")
    return "".join(lines).encode()


def huge_text_document(
    transactions: Iterable[Transaction], *, size: int = 8 * 1024 * 1024, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The first record's order description is ``size`` bytes long; the rest of the page is normal."""
    iterator = iter(transactions)
    first = next(iterator, None)
    if first is None:
        yield f"{XML_DECLARATION}<nm_response></nm_response>\n".encode()
        return
    marker = "\x00HUGE\x00"
    text = render_transaction(first, order_description=marker)
    head, tail = text.split(marker)
    yield (XML_DECLARATION + "<nm_response>\n" + head).encode()
    filler = ("Lorem ipsum dolor sit amet &amp; more. " * (chunk_bytes // 40 + 1))[:chunk_bytes].encode()
    sent = 0
    while sent < size:
        piece = filler[: min(chunk_bytes, size - sent)]
        piece = piece[: piece.rfind(b" ") + 1] or piece  # never cut an entity reference
        yield piece
        sent += len(piece)
    yield tail.encode()
    yield from render_document_tail(iterator, chunk_bytes=chunk_bytes)


def render_document_tail(
    iterator: Iterator[Transaction], *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for txn in iterator:
        text = render_transaction(txn)
        buffer.append(text)
        size += len(text)
        if size >= chunk_bytes:
            yield "".join(buffer).encode()
            buffer.clear()
            size = 0
    buffer.append("</nm_response>\n")
    yield "".join(buffer).encode()


def _take(items: Iterable[Transaction], n: int) -> Iterator[Transaction]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item
