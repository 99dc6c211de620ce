"""One case's facts: what a policy reads and what the planner places steps by.

The Facts JSON (docs/architecture.md: money as decimal strings, times ISO 8601) is read once, at the edge, by
:meth:`Facts.from_json`; the database side builds :class:`Facts` directly (``app.recovery.planning.case_facts``).
Inside,
times are aware UTC datetimes, and messages already sent are :class:`rules.timing.SentRecord`s.

A policy reads the groups by field name (``dsl.schema.FIELDS``: ``customer.country``, ``transaction.amount``,
``history.previous_cases``, ...), so each group stays a plain dict of those fields, as the compiled policy expects;
they are never changed after construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rules.timing import SentRecord

__all__ = ["Facts", "FactsError", "instant", "iso_instant"]


class FactsError(ValueError):
    """The facts cannot be planned (not an object, or no usable time at all)."""


def instant(value: object) -> datetime | None:
    """An ISO 8601 time (``2026-11-27T01:30:00Z``; a time without a zone is UTC) as aware UTC, else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def iso_instant(moment: datetime) -> str:
    """The form the plan and the facts write times in: ``2026-11-27T14:00:00Z`` (whole seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _group(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Facts:
    """A facts snapshot. ``now``: when the planning happens; ``transaction["failed_at"]``: a datetime or absent.

    ``decline`` is what the facts say about the decline (``reason``, ``kind``, ``code``), or None: the planner then
    derives it from the transaction's decline code (``rules.planner.decline_facts``).
    """

    now: datetime | None
    customer: dict[str, Any] = field(default_factory=dict)
    transaction: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)  # the counts a policy reads; ``sent`` below
    sent: tuple[SentRecord, ...] = ()
    decline: dict[str, Any] | None = None
    predicted: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_at(self) -> datetime | None:
        value = self.transaction.get("failed_at")
        return value if isinstance(value, datetime) else None

    @property
    def transaction_id(self) -> str:
        return str(self.transaction.get("id") or "")

    def text(self, group: str, name: str) -> str | None:
        """A text fact (``customer.country``), None when missing, empty or not a text."""
        value = getattr(self, group).get(name)
        return value if isinstance(value, str) and value else None

    @property
    def opted_out(self) -> frozenset[str]:
        return frozenset(c for c in self.customer.get("opted_out") or () if isinstance(c, str))

    def for_policy(self, decline: Mapping[str, Any]) -> dict[str, Any]:
        """What a compiled policy's ``decide`` and ``explain`` read, with ``decline`` filled in."""
        return {
            "now": self.now,
            "customer": self.customer,
            "transaction": self.transaction,
            "history": self.history,
            "decline": decline,
            "predicted": self.predicted,
        }

    @classmethod
    def from_json(cls, facts: object) -> Facts:
        """The Facts JSON (parsed) -> Facts. Raises FactsError when it is not an object.

        Times that cannot be read count as missing, as everything else a policy cannot read does."""
        if isinstance(facts, Facts):
            return facts
        if not isinstance(facts, Mapping):
            raise FactsError("facts must be a JSON object")
        transaction = _group(facts.get("transaction"))
        if "failed_at" in transaction:
            failed_at = instant(transaction["failed_at"])
            if failed_at is None:
                del transaction["failed_at"]
            else:
                transaction["failed_at"] = failed_at
        history = _group(facts.get("history"))
        raw_sent = history.pop("sent", None)
        sent: list[SentRecord] = []
        for item in raw_sent if isinstance(raw_sent, list) else []:
            if isinstance(item, Mapping):
                at, channel = instant(item.get("at")), item.get("channel")
                if at and isinstance(channel, str) and channel:
                    sent.append(SentRecord(at, channel))
        given = facts.get("decline")
        return cls(
            now=instant(facts.get("now")),
            customer=_group(facts.get("customer")),
            transaction=transaction,
            history=history,
            sent=tuple(sent),
            decline=dict(given) if isinstance(given, Mapping) else None,
            predicted=_group(facts.get("predicted")),
        )

    def to_json(self) -> dict[str, Any]:
        """The Facts JSON of these facts (times as ISO 8601 UTC)."""
        out: dict[str, Any] = {}
        if self.now is not None:
            out["now"] = iso_instant(self.now)
        if self.customer:
            out["customer"] = dict(self.customer)
        if self.history or self.sent or self.customer:
            out["history"] = {
                **self.history,
                "sent": [{"channel": s.channel, "at": iso_instant(s.at)} for s in self.sent],
            }
        transaction = dict(self.transaction)
        if self.failed_at is not None:
            transaction["failed_at"] = iso_instant(self.failed_at)
        out["transaction"] = transaction
        if self.decline is not None:
            out["decline"] = dict(self.decline)
        if self.predicted:
            out["predicted"] = dict(self.predicted)
        return out
