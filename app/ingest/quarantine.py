"""Quarantine: gateway records refused at ingest (:mod:`app.ingest.validation`), kept as they came with their reasons.

A quarantined record opens no case and sends nothing. One row per record (gateway account, gateway, transaction
id): fetched again in an overlapping window, or pushed again, it is the same row seen again. If it comes back
changed, its reasons are brought up to date and a dismissal is lifted (there is something new to look at).
Operators list and dismiss them in the admin (``admin/quarantine.py``); every dismissal is in the audit log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.gateways.base import InvalidRecord
from app.models import QuarantinedRecord
from app.models.types import utcnow

log = logging.getLogger(__name__)

FAILED_SALE = "failed_sale"
SALE = "sale"
FETCH = "fetch"
WEBHOOK = "webhook"
#: who closed a row whose record came in accepted later (corrected at the gateway)
ACCEPTED_LATER = "ingest: accepted when it came again"


def record_key(record: InvalidRecord) -> str:
    """The transaction id when it is a usable one, else a hash of the record as received."""
    txn_id = record.gateway_transaction_id
    if txn_id and len(txn_id) <= 64 and txn_id.isprintable() and not any(ch.isspace() for ch in txn_id):
        return txn_id
    body = json.dumps(storable(record.raw), sort_keys=True, default=str, ensure_ascii=True)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def storable(value: Any) -> Any:
    """``value`` with every text made storable: a lone surrogate (which a JSON body may carry, and no database can
    hold) is written out as its escape, so the record is kept as received, but readable."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


#: a JSON escape of a lone surrogate (UTF-8 bytes cannot carry one; only an escape can)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def storable_json(value: Any, body: bytes) -> Any:
    """:func:`storable` of ``value``, parsed from the JSON ``body``: ``value`` itself when ``body`` cannot carry a
    lone surrogate (walking every text costs more than the rest of a webhook's request)."""
    return storable(value) if _SURROGATE_ESCAPE.search(body) else value


def quarantine(records: Sequence[InvalidRecord], account_id: int, *, kind: str, source: str = FETCH) -> int:
    """Keep ``records`` (refused) in quarantine, committed; returns how many were new. A race with another writer
    quarantining the same record (a webhook and a fetch) is settled by trying once more: the row is then there."""
    if not records:
        return 0
    for attempt in (1, 2):
        try:
            added = _upsert(records, account_id, kind, source, utcnow())
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise
        else:
            return added
    return 0  # not reached


def _upsert(records: Sequence[InvalidRecord], account_id: int, kind: str, source: str, now: datetime) -> int:
    latest: dict[tuple[str, str], InvalidRecord] = {}
    for record in records:
        latest[(record.gateway, record_key(record))] = record
    stored = {
        (row.gateway, row.record_key): row
        for row in db.session.scalars(
            sa.select(QuarantinedRecord).where(
                QuarantinedRecord.gateway_account_id == account_id,
                sa.tuple_(QuarantinedRecord.gateway, QuarantinedRecord.record_key).in_(list(latest)),
            )
        )
    }
    added = 0
    for (gateway, key), record in latest.items():
        raw = storable(dict(record.raw))
        reasons = [p.as_dict() for p in record.problems]
        row = stored.get((gateway, key))
        if row is None:
            txn_id = storable(record.gateway_transaction_id or "")[:64] or None
            db.session.add(QuarantinedRecord(
                gateway_account_id=account_id, gateway=gateway, record_key=key, gateway_transaction_id=txn_id,
                kind=kind, source=source, raw=raw, reasons=reasons, first_seen_at=now, last_seen_at=now, times_seen=1,
            ))
            added += 1
            log.warning("%s record %s quarantined: %s", gateway, key, "; ".join(
                f"{p.field}: {p.problem}" for p in record.problems))
            continue
        row.last_seen_at = now
        row.times_seen = (row.times_seen or 0) + 1
        if row.raw != raw or row.reasons != reasons:  # changed at the gateway: brought up to date, shown again
            row.raw, row.reasons, row.kind, row.source = raw, reasons, kind, source
            row.dismissed_at = row.dismissed_by = None
    db.session.flush()
    return added


def release(records: Sequence[Any], account_id: int) -> int:
    """Records accepted now that were quarantined before (the merchant corrected them at the gateway): their rows
    are closed, dismissed by ingest. In the caller's transaction; returns how many rows it closed."""
    by_gateway: dict[str, list[str]] = {}
    for record in records:
        by_gateway.setdefault(record.gateway, []).append(record.gateway_transaction_id)
    closed = 0
    for gateway, ids in by_gateway.items():
        closed += db.session.execute(
            sa.update(QuarantinedRecord)
            .where(QuarantinedRecord.gateway_account_id == account_id, QuarantinedRecord.gateway == gateway,
                   QuarantinedRecord.record_key.in_(ids), QuarantinedRecord.dismissed_at.is_(None))
            .values(dismissed_at=utcnow(), dismissed_by=ACCEPTED_LATER)
            .execution_options(synchronize_session=False)
        ).rowcount
    return closed


# -- for the admin ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineList:
    rows: list[QuarantinedRecord]
    total: int
    page: int
    pages: int


def list_quarantined(*, dismissed: bool = False, page: int = 1, per_page: int = 50) -> QuarantineList:
    """Quarantined records, newest seen first: those waiting for a look, or (``dismissed``) those dismissed."""
    where = QuarantinedRecord.dismissed_at.is_not(None) if dismissed else QuarantinedRecord.dismissed_at.is_(None)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(QuarantinedRecord).where(where)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    rows = list(db.session.scalars(
        sa.select(QuarantinedRecord).where(where)
        .order_by(QuarantinedRecord.last_seen_at.desc(), QuarantinedRecord.id.desc())
        .offset((page - 1) * per_page).limit(per_page)
    ))
    return QuarantineList(rows, total, page, pages)


def open_count() -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(QuarantinedRecord).where(QuarantinedRecord.dismissed_at.is_(None))
    ) or 0


def dismiss(record_id: int, actor: str) -> QuarantinedRecord | None:
    """An operator has seen a quarantined record and dismisses it (audited, committed). None, changing nothing,
    when there is no such record or it is already dismissed."""
    from app.audit import record as audit

    row = db.session.scalar(sa.select(QuarantinedRecord).where(QuarantinedRecord.id == record_id).with_for_update()
                            .execution_options(populate_existing=True))
    if row is None or row.dismissed_at is not None:
        db.session.rollback()
        return None
    row.dismissed_at = utcnow()
    row.dismissed_by = actor
    audit(actor, "quarantine.dismiss", "quarantined_record", row.id,
          {"gateway": row.gateway, "record": row.record_key, "reasons": [r.get("field") for r in row.reasons or []]})
    db.session.commit()
    return row
