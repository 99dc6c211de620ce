"""The audit log: append-only entries chained by a keyed hash, one writer at a time, anchored by a signed head.

- **Keyed.** Each entry's hash is an HMAC-SHA256, with the audit key, of the hash before it and the entry's contents
  (``hash_version`` 2). The key is outside the database (``RECOUP_AUDIT_KEY``, config ``AUDIT_KEYS``: a list, the
  first signs, every one verifies; without any, development derives one from ``SECRET_KEY``), so someone who can
  write to the database cannot rewrite an entry and re-chain the ones after it. Entries written before the chain was
  keyed keep their plain SHA-256 (``hash_version`` 1) and verify as they always did.
- **Serialised.** :func:`record` locks the chain's head row (``SELECT ... FOR UPDATE``) before reading the last hash,
  so concurrent audited actions queue (on MariaDB they forked the chain, and ``audit verify`` reported tampering).
- **Anchored.** The head row (``audit_chain_head``, outside the audit table) names the last entry, its hash and the
  number of entries, signed with the key, and moves in the same transaction as every entry: deleting the newest
  entries, or all of them, is detected. ``flask audit checkpoint`` also writes the signed head to a file
  (``AUDIT_CHECKPOINT_PATH``, in the instance folder) to be kept elsewhere; :func:`verify_chain` checks the log
  still holds what the file names, which catches a head row put back from an old copy.

:func:`verify_chain` names the first thing wrong, and where.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from app.extensions import db
from app.models import AuditEntry
from app.models.audit import AuditChainHead
from app.models.types import utcnow

GENESIS = "0" * 64
HEAD_ID = 1
UNKEYED, KEYED = 1, 2


# -- keys and hashes -------------------------------------------------------------------------------------------------
def audit_keys(config: Any) -> list[bytes]:
    """The keys that verify, the signing one first: the configured ones, then the one derived from SECRET_KEY (the
    only one in development, which needs no configuration)."""
    keys = [k.encode("utf-8") for k in (config.get("AUDIT_KEYS") or ())]
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"recoup-audit", info=b"v2").derive(
        str(config["SECRET_KEY"]).encode("utf-8")
    )
    return [*keys, derived]


def _canonical(*parts: Any) -> bytes:
    return json.dumps(list(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    target_type: str | None,
    target_id: str | None,
    details: dict[str, Any],
) -> str:
    """The unkeyed hash of entries written before the chain was keyed (``hash_version`` 1)."""
    return hashlib.sha256(
        _canonical(prev_hash, _stamp(at), actor, action, target_type, target_id, details)
    ).hexdigest()


def keyed_entry_hash(key: bytes, prev_hash: str, at: datetime, actor: str, action: str, target_type: str | None,
                     target_id: str | None, details: dict[str, Any]) -> str:
    message = _canonical("v2", prev_hash, _stamp(at), actor, action, target_type, target_id, details)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _head_message(last_id: int | None, last_hash: str | None, entries: int, legacy_until_id: int | None,
                  recreated_at_id: int | None) -> bytes:
    return _canonical("head", last_id, last_hash, entries, legacy_until_id, recreated_at_id)


def _sign_head(key: bytes, head: AuditChainHead) -> str:
    message = _head_message(head.last_id, head.last_hash, head.entries, head.legacy_until_id, head.recreated_at_id)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signed_by_any(keys: list[bytes], message: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    return any(hmac.compare_digest(hmac.new(k, message, hashlib.sha256).hexdigest(), signature) for k in keys)


# -- writing ---------------------------------------------------------------------------------------------------------
def record(
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction, holding the chain's head until that transaction ends (other
    writers wait for it, so the chain never forks)."""
    key = audit_keys(current_app.config)[0]
    head = _locked_head(key)
    prev = head.last_hash or GENESIS
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
        hash=keyed_entry_hash(key, prev, at, actor, action, target_type, tid, details),
        hash_version=KEYED,
    )
    db.session.add(entry)
    db.session.flush()
    head.last_id, head.last_hash, head.entries = entry.id, entry.hash, (head.entries or 0) + 1
    head.updated_at = at
    head.signature = _sign_head(key, head)
    db.session.flush()
    return entry


def _locked_head(key: bytes) -> AuditChainHead:
    """The head row, locked for this transaction; made (and adopted from the log as it is) when there is none."""
    # made before it is locked: a locking read of a missing row would take a gap lock that the insert then waits for
    if db.session.scalar(sa.select(AuditChainHead.id).where(AuditChainHead.id == HEAD_ID)) is None:
        _insert_placeholder_head()
    head = db.session.scalars(
        sa.select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update().execution_options(
            populate_existing=True)
    ).one()
    if head.signature is None:
        _adopt(head, key)
    return head


def _insert_placeholder_head() -> None:
    """An empty head row, filled under the lock by whoever gets it first. On MariaDB it is inserted on a connection
    of its own and committed at once: inserting it inside the caller's transaction, two racing writers would each
    hold a shared lock the other's FOR UPDATE waits for."""
    table = AuditChainHead.__table__
    row = {"id": HEAD_ID, "entries": 0, "updated_at": utcnow()}
    insert = sa.insert(table).prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")
    if db.engine.dialect.name == "mysql":
        with db.engine.begin() as conn:
            conn.execute(insert, row)
    else:
        db.session.execute(insert, row)


def _adopt(head: AuditChainHead, key: bytes) -> None:
    """A head made now takes the log as it finds it. Unkeyed entries only (an upgraded log, or none): they become
    the legacy part. Keyed entries already there mean the head was removed: that is kept in the head, signed, and
    :func:`verify_chain` reports it."""
    last = db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
    count = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0
    keyed = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)
                              .where(AuditEntry.hash_version == KEYED)) or 0
    head.last_id = last.id if last else None
    head.last_hash = last.hash if last else None
    head.entries = count
    if keyed:
        head.recreated_at_id = last.id if last else None
    else:
        head.legacy_until_id = last.id if last else None
    head.signature = _sign_head(key, head)


# -- checking --------------------------------------------------------------------------------------------------------
#: where a problem is (ChainCheck.kind): an entry, the signed head row, or the checkpoint file
ENTRY, HEAD, CHECKPOINT = "entry", "head", "checkpoint"


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    #: the entry where the problem shows (for a head problem, the newest entry the head is about; none for the
    #: checkpoint, or when no entry is left)
    first_broken_id: int | None = None
    problem: str | None = None
    kind: str | None = None  # ENTRY, HEAD or CHECKPOINT when not ok


def verify_chain(config: Any = None) -> ChainCheck:
    """Walk the whole log in order; the first problem, named with the entry where it shows."""
    config = config if config is not None else current_app.config
    keys = audit_keys(config)
    head = db.session.get(AuditChainHead, HEAD_ID)
    if head is not None and head.signature is None:
        head = None  # a placeholder nobody filled: as good as none
    head_ok = head is not None and _signed_by_any(keys, _head_message(
        head.last_id, head.last_hash, head.entries, head.legacy_until_id, head.recreated_at_id), head.signature)
    if head is not None and not head_ok:
        return ChainCheck(False, 0, head.last_id, "the chain's signed head was altered (its signature does not "
                                                  "match): the newest entries cannot be vouched for", HEAD)
    prev = GENESIS
    count = 0
    keyed_seen = False
    last: AuditEntry | None = None
    for entry in db.session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)):
        count += 1
        if entry.prev_hash != prev:
            return ChainCheck(False, count, entry.id, "it does not follow the entry before it: an entry before it "
                                                      "was altered or removed, or two writers forked the chain", ENTRY)
        problem = _entry_problem(entry, prev, keys, head)
        if problem:
            return ChainCheck(False, count, entry.id, problem, ENTRY)
        keyed_seen = keyed_seen or entry.hash_version == KEYED
        prev = entry.hash
        last = entry
    if head is None:
        if keyed_seen:
            return ChainCheck(False, count, last.id if last else None,
                              "the chain's signed head is missing: the newest entries may have been removed", HEAD)
        return ChainCheck(True, count)
    if head.recreated_at_id is not None:
        return ChainCheck(False, count, head.recreated_at_id,
                          f"the chain's signed head was removed and made again at entry #{head.recreated_at_id}: "
                          "entries written before that may have been removed", HEAD)
    problem = _head_problem(head, last, count)
    if problem:
        return ChainCheck(False, count, last.id if last else None, problem, HEAD)
    problem = _checkpoint_problem(config, keys)
    if problem:
        return ChainCheck(False, count, None, problem, CHECKPOINT)
    return ChainCheck(True, count)


def _entry_problem(entry: AuditEntry, prev: str, keys: list[bytes], head: AuditChainHead | None) -> str | None:
    fields = (prev, entry.at, entry.actor, entry.action, entry.target_type, entry.target_id, entry.details or {})
    if entry.hash_version == UNKEYED:
        legacy_until = head.legacy_until_id if head is not None else None
        if head is not None and (legacy_until is None or entry.id > legacy_until):
            return ("it claims the old unkeyed format, but entries after "
                    f"#{legacy_until or 0} are all keyed: it was rewritten")
        if entry.hash != entry_hash(*fields):
            return "its contents were altered"
        return None
    if entry.hash_version == KEYED:
        if not any(hmac.compare_digest(keyed_entry_hash(k, *fields), entry.hash) for k in keys):
            return ("its keyed hash does not match its contents: it was altered, or the chain was re-chained by "
                    "someone without the audit key")
        return None
    return f"it has an unknown hash format ({entry.hash_version})"


def _head_problem(head: AuditChainHead, last: AuditEntry | None, count: int) -> str | None:
    last_id = last.id if last else None
    if head.last_id != last_id or head.last_hash != (last.hash if last else None):
        if last is None or (head.last_id or 0) > last.id:
            return (f"the newest entries were removed: the log ends at #{last_id or 0} but its signed head names "
                    f"#{head.last_id} ({head.entries} entries; {count} are left)")
        return (f"entries after #{head.last_id} were added around the audit (the signed head names #{head.last_id}, "
                f"the log ends at #{last_id})")
    if head.entries != count:
        return f"the log has {count} entries but its signed head counts {head.entries}: entries were removed"
    return None


# -- a checkpoint kept outside the database -------------------------------------------------------------------------
def _checkpoint_path(config: Any) -> Path | None:
    path = config.get("AUDIT_CHECKPOINT_PATH")
    return Path(path) if path else None


def write_checkpoint(config: Any = None) -> dict[str, Any]:
    """The signed head as it is now, written to ``AUDIT_CHECKPOINT_PATH`` (keep a copy elsewhere too)."""
    config = config if config is not None else current_app.config
    path = _checkpoint_path(config)
    if path is None:
        raise ValueError("AUDIT_CHECKPOINT_PATH is not set")
    head = db.session.get(AuditChainHead, HEAD_ID)
    key = audit_keys(config)[0]
    body = {"last_id": head.last_id if head else None, "last_hash": head.last_hash if head else None,
            "entries": head.entries if head else 0, "at": _stamp(utcnow())}
    checkpoint = {**body, "signature": hmac.new(key, _canonical("checkpoint", body), hashlib.sha256).hexdigest()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(checkpoint, indent=2) + "\n", encoding="utf-8")
    return checkpoint


def _checkpoint_problem(config: Any, keys: list[bytes]) -> str | None:
    path = _checkpoint_path(config)
    if path is None or not path.exists():
        return None
    try:
        checkpoint = json.loads(path.read_text(encoding="utf-8"))
        body = {k: checkpoint[k] for k in ("last_id", "last_hash", "entries", "at")}
    except (ValueError, KeyError, TypeError):
        return f"the checkpoint {path} cannot be read"
    if not _signed_by_any(keys, _canonical("checkpoint", body), checkpoint.get("signature")):
        return f"the checkpoint {path} is not signed with the audit key"
    if body["last_id"] is None:
        return None
    entry = db.session.get(AuditEntry, body["last_id"])
    if entry is None or entry.hash != body["last_hash"]:
        return (f"entry #{body['last_id']}, the last one in the checkpoint of {body['at']}, is no longer in the log "
                "as it was: the log was cut back or rewritten (its head put back from an old copy)")
    return None
