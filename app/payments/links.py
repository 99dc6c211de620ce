"""Signed, expiring, revocable tokens: payment links, open pixels and click redirects.

A payment link token is signed (itsdangerous) and bound to one case; only its SHA-256 is stored, so a database
reader cannot forge or replay links, and revoking is deleting trust in that hash. Tracking tokens are signed too,
so nobody can record opens or clicks for messages they did not receive, or use us as an open redirect.

Every payment link also has a short form for SMS and WhatsApp, ``/p/<code>``: ten random base62 characters
(about 59 bits). The code is the token's nonce, and the link's row keeps only the code's SHA-256 and the message
the token names, so the server rebuilds the signed token from a code it is shown, and nothing stored lets a
database reader do the same. A short link is the same link: it expires and is revoked with it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from app.extensions import db
from app.models import MessageEvent, OutboxMessage, PaymentLink, RecoveryCase
from app.models.types import utcnow
from rules.case_states import ACTIVE
from rules.vocabulary import CHANNELS

SHORT_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
SHORT_LENGTH = 10
#: bytes below this (4 x 62 = 248) map evenly onto the alphabet
_UNBIASED = 256 - 256 % len(SHORT_ALPHABET)
SHORT_CODE = re.compile(rf"[0-9A-Za-z]{{{SHORT_LENGTH}}}")


class LinkError(Exception):
    """The token is unusable. ``reason`` is for logs only; people get one friendly page whatever it is.

    ``link`` is the genuine link behind the token when there is one (expired, revoked, its case closed): the page
    can then speak the customer's language and say whether the payment is already made."""

    def __init__(self, reason: str, link: PaymentLink | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.link = link


@functools.lru_cache(maxsize=32)
def _serializer(secret_key: str, salt: str) -> URLSafeSerializer:
    """One serializer per key and purpose, kept (it holds no state between calls; a dispatch batch signs
    thousands of tokens)."""
    return URLSafeSerializer(secret_key, salt=salt)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_payment_link(case: RecoveryCase, secret_key: str, *, valid_for: timedelta = timedelta(days=30),
                       message_id: int | None = None) -> str:
    """A new link for ``case``. ``message_id``: the outbox message that will carry it (signed into the token,
    so a payment through this link is attributed to that message)."""
    token, row = new_payment_link(case.id, secret_key, valid_for=valid_for, message_id=message_id)
    db.session.add(PaymentLink(**row))
    db.session.flush()
    return token


def new_payment_link(case_id: int, secret_key: str, *, valid_for: timedelta = timedelta(days=30),
                     message_id: int | None = None) -> tuple[str, dict[str, Any]]:
    """A new link's token and the values of its ``payment_links`` row, for a caller that writes many rows in
    one statement (the dispatcher's batches)."""
    code = new_short_code()
    token = _pay_token(secret_key, case_id, code, message_id)
    now = utcnow()
    return token, {"case_id": case_id, "token_hash": token_hash(token), "short_code_hash": token_hash(code),
                   "message_id": message_id, "created_at": now, "expires_at": now + valid_for}


def new_short_code() -> str:
    """SHORT_LENGTH characters drawn uniformly from SHORT_ALPHABET, from one read of the system's randomness (a
    ``secrets.choice`` per character read it ten times, a third of a millisecond per message). A byte under
    :data:`_UNBIASED` picks a character; the few above are skipped, so no character is likelier than another."""
    picked: list[str] = []
    while len(picked) < SHORT_LENGTH:
        picked.extend(SHORT_ALPHABET[b % len(SHORT_ALPHABET)] for b in secrets.token_bytes(2 * SHORT_LENGTH)
                      if b < _UNBIASED)
    return "".join(picked[:SHORT_LENGTH])


def _pay_token(secret_key: str, case_id: int, nonce: str, message_id: int | None) -> str:
    payload: dict[str, object] = {"c": case_id, "n": nonce}
    if message_id is not None:
        payload["m"] = message_id
    return str(_serializer(secret_key, "pay").dumps(payload))


def short_url(base_url: str, token: str, secret_key: str) -> str:
    """The short form of a payment link we issued (``{base}/p/<code>``); the long one for a link without it."""
    base = base_url.rstrip("/")
    try:
        payload = _serializer(secret_key, "pay").loads(token)
    except BadSignature:
        raise LinkError("bad signature") from None
    code = payload.get("n") if isinstance(payload, dict) else None
    if isinstance(code, str) and SHORT_CODE.fullmatch(code):
        return f"{base}/p/{code}"
    return f"{base}/pay/{token}"


@dataclass(frozen=True)
class ShortLink:
    token: str  # the signed token it stands for
    link_id: int
    message_id: int | None


def resolve_short_code(code: str, secret_key: str) -> ShortLink | None:
    """The payment link a short code stands for, whatever its state (``/pay/<token>`` judges that), or None."""
    if not SHORT_CODE.fullmatch(code or ""):
        return None
    link = db.session.scalar(sa.select(PaymentLink).where(PaymentLink.short_code_hash == token_hash(code)))
    if link is None:
        return None
    token = _pay_token(secret_key, link.case_id, code, link.message_id)
    if token_hash(token) != link.token_hash:  # signed with another key, or a row that was tampered with
        return None
    return ShortLink(token, link.id, link.message_id)


@dataclass(frozen=True)
class OpenedLink:
    link: PaymentLink
    case: RecoveryCase
    #: the message that carried the link: from the token when it names one, else worked out (see below)
    message_id: int | None = None


def open_payment_link(token: str, secret_key: str, *, now: datetime | None = None, track: bool = True) -> OpenedLink:
    now = now or utcnow()
    try:
        payload = _serializer(secret_key, "pay").loads(token)
    except BadSignature:
        raise LinkError("bad signature") from None
    link = db.session.scalar(sa.select(PaymentLink).where(PaymentLink.token_hash == token_hash(token)))
    if link is None or not isinstance(payload, dict) or link.case_id != payload.get("c"):
        raise LinkError("unknown token")
    if link.revoked_at is not None:
        raise LinkError("revoked", link)
    if link.expires_at <= now:
        raise LinkError("expired", link)
    case = db.session.get(RecoveryCase, link.case_id)
    if case is None or case.state not in ACTIVE:
        raise LinkError("case closed", link)
    message_id = payload.get("m") if isinstance(payload.get("m"), int) else None
    if message_id is None:
        message_id = message_for_link(link)
    if track:
        # one UPDATE, not read-modify-write: many opens at once all count
        db.session.execute(
            sa.update(PaymentLink).where(PaymentLink.id == link.id)
            .values(open_count=PaymentLink.open_count + 1, last_opened_at=now,
                    first_opened_at=sa.func.coalesce(PaymentLink.first_opened_at, now))
            .execution_options(synchronize_session=False))
        if message_id is not None:
            db.session.add(MessageEvent(message_id=message_id, kind="link_opened", occurred_at=now,
                                        provider_payload={"link": link.id}))
        db.session.commit()
    return OpenedLink(link, case, message_id)


def genuine_payment_link(token: str, secret_key: str) -> PaymentLink | None:
    """The link row behind a token we signed and issued, whatever its state (revoked, expired, case closed).

    Not for granting access: only for recognising a customer's own repeated submission after the link closed.
    """
    try:
        payload = _serializer(secret_key, "pay").loads(token)
    except BadSignature:
        return None
    link = db.session.scalar(sa.select(PaymentLink).where(PaymentLink.token_hash == token_hash(token)))
    if link is None or not isinstance(payload, dict) or link.case_id != payload.get("c"):
        return None
    return link


def message_for_link(link: PaymentLink) -> int | None:
    """The outbox message a link was issued for, when the token does not say.

    The dispatcher issues a case's link while composing a claimed message and records the send right after,
    so the first message of that case with a send outcome recorded at or after the link's creation is the
    one that carried it.
    """
    found = db.session.scalar(
        sa.select(MessageEvent.message_id)
        .join(OutboxMessage, OutboxMessage.id == MessageEvent.message_id)
        .where(OutboxMessage.case_id == link.case_id, OutboxMessage.channel.in_(CHANNELS),
               MessageEvent.kind.in_(("sent", "unknown", "failed")), MessageEvent.recorded_at >= link.created_at)
        .order_by(MessageEvent.recorded_at, MessageEvent.id)
        .limit(1))
    if found is not None:
        return int(found)
    found = db.session.scalar(
        sa.select(OutboxMessage.id)
        .where(OutboxMessage.case_id == link.case_id, OutboxMessage.channel.in_(CHANNELS),
               OutboxMessage.claimed_at.is_not(None), OutboxMessage.claimed_at <= link.created_at)
        .order_by(OutboxMessage.claimed_at.desc(), OutboxMessage.id.desc())
        .limit(1))
    return int(found) if found is not None else None


def revoke_case_links(case_id: int, *, now: datetime | None = None) -> int:
    result = db.session.execute(
        sa.update(PaymentLink)
        .where(PaymentLink.case_id == case_id, PaymentLink.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return int(result.rowcount or 0)


#: what each tracking token is for, signed into it: a token made for one purpose is refused for another. The
#: unsubscribe link keeps the salt every tracking token once had ("track"), so links in emails already sent still
#: unsubscribe; the open pixel has its own, so a pixel's URL (fetched by image proxies, visible in the HTML) can no
#: longer unsubscribe anyone, and an unsubscribe link cannot record opens.
TRACK_SALT = "track"
UNSUBSCRIBE_SALT = TRACK_SALT
OPEN_SALT = "track.open"


def tracking_token(secret_key: str, message_id: int, url: str) -> str:
    """A click redirect's token: the message and where the click goes."""
    return str(_serializer(secret_key, TRACK_SALT).dumps({"m": message_id, "u": url}))


def unsubscribe_token(secret_key: str, message_id: int) -> str:
    return str(_serializer(secret_key, UNSUBSCRIBE_SALT).dumps({"m": message_id}))


def open_pixel_token(secret_key: str, message_id: int) -> str:
    return str(_serializer(secret_key, OPEN_SALT).dumps({"m": message_id}))


def _read(secret_key: str, token: str, salt: str) -> tuple[int, str | None]:
    try:
        payload = _serializer(secret_key, salt).loads(token)
    except BadSignature:
        raise LinkError("bad signature") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("m"), int):
        raise LinkError("malformed")
    url = payload.get("u")
    return payload["m"], url if isinstance(url, str) else None


def read_tracking_token(secret_key: str, token: str) -> tuple[int, str | None]:
    """A click redirect's message and URL."""
    return _read(secret_key, token, TRACK_SALT)


def read_unsubscribe_token(secret_key: str, token: str) -> int:
    """The message an unsubscribe link names; a click redirect's token (it carries a URL) is not one."""
    message_id, url = _read(secret_key, token, UNSUBSCRIBE_SALT)
    if url is not None:
        raise LinkError("not an unsubscribe token")
    return message_id


def read_open_pixel_token(secret_key: str, token: str) -> int:
    return _read(secret_key, token, OPEN_SALT)[0]
