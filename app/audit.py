"""The audit log: append-only entries chained by SHA-256, and a verifier that names the first broken entry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry
from app.models.types import utcnow

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    target_type: str | None,
    target_id: str | None,
    details: dict[str, Any],
) -> str:
    canonical = json.dumps(
        [prev_hash, at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), actor, action, target_type, target_id, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record(
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction. Concurrent writers race on the unique hash, never silently."""
    last = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
    prev = last.hash if last else GENESIS
    at = utcnow()
    details = json.loads(json.dumps(details or {}, default=str))
    tid = None if target_id is None else str(target_id)
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=tid,
        details=details,
        prev_hash=prev,
        hash=entry_hash(prev, at, actor, action, target_type, tid, details),
    )
    db.session.add(entry)
    db.session.flush()
    return entry


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    problem: str | None = None


def verify_chain() -> ChainCheck:
    prev = GENESIS
    count = 0
    for entry in db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)):
        count += 1
        if entry.prev_hash != prev:
            return ChainCheck(False, count, entry.id, "an entry before it was altered or removed")
        expected = entry_hash(
            prev, entry.at, entry.actor, entry.action, entry.target_type, entry.target_id, entry.details or {}
        )
        if entry.hash != expected:
            return ChainCheck(False, count, entry.id, "its contents were altered")
        prev = entry.hash
    return ChainCheck(True, count)
