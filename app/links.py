"""Signed, expiring, revocable tokens: payment links, open pixels and click redirects.

A payment link token is signed (itsdangerous) and bound to one case; only its SHA-256 is stored, so a database
reader cannot forge or replay links, and revoking is deleting trust in that hash. Tracking tokens are signed too,
so nobody can record opens or clicks for messages they did not receive, or use us as an open redirect.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from app.extensions import db
from app.models import PaymentLink, RecoveryCase
from app.models.types import utcnow

OPEN_STATES = ("open", "contacting", "escalated")


class LinkError(Exception):
    """The token is unusable. ``reason`` is for logs only; people get one friendly page whatever it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _serializer(secret_key: str, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=salt)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_payment_link(case: RecoveryCase, secret_key: str, *, valid_for: timedelta = timedelta(days=30)) -> str:
    token = _serializer(secret_key, "pay").dumps({"c": case.id, "n": secrets.token_urlsafe(8)})
    db.session.add(PaymentLink(case_id=case.id, token_hash=token_hash(token), expires_at=utcnow() + valid_for))
    db.session.flush()
    return str(token)


@dataclass(frozen=True)
class OpenedLink:
    link: PaymentLink
    case: RecoveryCase


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
        raise LinkError("revoked")
    if link.expires_at <= now:
        raise LinkError("expired")
    case = db.session.get(RecoveryCase, link.case_id)
    if case is None or case.state not in OPEN_STATES:
        raise LinkError("case closed")
    if track:
        link.open_count += 1
        link.first_opened_at = link.first_opened_at or now
        link.last_opened_at = now
        db.session.commit()
    return OpenedLink(link, case)


def revoke_case_links(case_id: int, *, now: datetime | None = None) -> int:
    result = db.session.execute(
        sa.update(PaymentLink)
        .where(PaymentLink.case_id == case_id, PaymentLink.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    return int(result.rowcount or 0)


def tracking_token(secret_key: str, message_id: int, url: str | None = None) -> str:
    payload: dict[str, object] = {"m": message_id}
    if url is not None:
        payload["u"] = url
    return str(_serializer(secret_key, "track").dumps(payload))


def read_tracking_token(secret_key: str, token: str) -> tuple[int, str | None]:
    try:
        payload = _serializer(secret_key, "track").loads(token)
    except BadSignature:
        raise LinkError("bad signature") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("m"), int):
        raise LinkError("malformed")
    url = payload.get("u")
    return payload["m"], url if isinstance(url, str) else None
