"""The checks at send time: a usable channel, and the contact rules and cadence caps as they stand now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.extensions import db
from app.models import Customer, OutboxMessage
from app.models.types import utcnow
from app.outbox.batch import add_event
from app.outbox.settings import ADDRESS_FIELD
from app.outbox.states import ON_THE_WAY
from app.payments.receipts import not_a_receipt
from rules.vocabulary import CHANNELS


class SendFacts:
    """What the checks of one batch share, read once: merchant contact windows, policy versions, histories."""

    def __init__(self, now: datetime, customer_ids: set[int]) -> None:
        self.now = now
        self.started = utcnow()  # the attempts' start (real clock, like the leases)
        self.customer_ids = customer_ids
        self._windows: dict[str, Any] | None = None
        self._versions: dict[int, Any] = {}
        self._histories: dict[int, Any] | None = None
        self._sent_now: dict[int, list[str]] = {}  # customer -> channels of this batch's messages on their way

    def windows(self) -> dict[str, Any]:
        if self._windows is None:
            from app.recovery.planning import contact_windows

            self._windows = contact_windows()  # the merchant's settings under the policy's own statements
        return self._windows

    def policy(self, version_id: int) -> Any:
        if version_id not in self._versions:
            from app.models import PolicyVersion
            from app.recovery.policies import compiled

            version = db.session.get(PolicyVersion, version_id)
            self._versions[version_id] = compiled(version) if version is not None else None
        return self._versions[version_id]

    def history(self, customer_id: int) -> Any:
        """The customer's last week, this batch's messages on their way included (read on first use: a batch
        without contact rules to check never reads it)."""
        if self._histories is None:
            self._histories = contact_histories(self.customer_ids, self.now)
        from rules.timing import ContactHistory
        from rules.timing.types import SentRecord

        history = self._histories.get(customer_id) or ContactHistory(sent=())
        now = tuple(SentRecord(at=self.now, channel=channel) for channel in self._sent_now.get(customer_id, ()))
        return ContactHistory(sent=(*history.sent, *now)) if now else history

    def record_send(self, customer_id: int | None, channel: str) -> None:
        """A message of this batch is going out now: the next ones of the same customer count it against the
        cadence caps (steps that fell due together go one at a time, as the caps allow)."""
        if customer_id is None or channel not in CHANNELS:
            return
        self._sent_now.setdefault(customer_id, []).append(channel)


def next_usable_channel(
    message: OutboxMessage, customer: Customer | None, senders: dict[str, Any], blocked: set[str]
) -> str | None:
    """The message's channel if it can be used, else the first usable fallback (the row moves to it)."""
    order = [message.channel, *(message.fallbacks or [])]
    for index, channel in enumerate(order):
        why = None
        if channel in blocked:
            why = "opted out"
        elif channel not in senders:
            why = "channel not configured"
        elif customer is None or not getattr(customer, ADDRESS_FIELD[channel], None):
            why = f"no {channel} address"
        if why is None:
            if index:
                message.channel, message.fallbacks = channel, order[index + 1 :]
            message.address = getattr(customer, ADDRESS_FIELD[channel])
            return channel
        add_event(message, "fallback" if index + 1 < len(order) else "skipped", {"channel": channel, "why": why})
        message.error_text = f"{channel}: {why}"
    return None


def contact_histories(customer_ids: set[int], now: datetime) -> dict[int, Any]:
    """What each customer got in the last week, on every channel: cadence caps hold across channels at send
    time. Messages on their way (``sending``, ``delivering``: another batch or worker has them) count as sent now.
    One query for a batch."""
    from rules.timing import ContactHistory
    from rules.timing.types import SentRecord

    sent: dict[int, list[SentRecord]] = {}
    if customer_ids:
        rows = db.session.execute(
            sa.select(OutboxMessage.customer_id, OutboxMessage.sent_at, OutboxMessage.channel).where(
                OutboxMessage.customer_id.in_(customer_ids),
                OutboxMessage.channel.in_(CHANNELS),
                not_a_receipt(),
                sa.or_(
                    sa.and_(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at > now - timedelta(days=8)),
                    OutboxMessage.state.in_(ON_THE_WAY),
                ),
            )
        ).all()
        for customer_id, at, channel in rows:
            sent.setdefault(customer_id, []).append(SentRecord(at=at or now, channel=channel))
    return {cid: ContactHistory(sent=tuple(records)) for cid, records in sent.items()}


@dataclass(frozen=True)
class Deferral:
    """A message that may not go yet: when it may, what held it back and where each rule came from."""

    until: datetime
    reasons: tuple[str, ...]
    held_by: tuple[dict[str, Any], ...]

    def event(self, channel: str, override: dict[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"until": self.until.isoformat(), "channel": channel,
                                   "reasons": list(self.reasons), "held_by": list(self.held_by)}
        if override:
            payload["override"] = override
        return payload


def deferred_until(
    message: OutboxMessage, customer: Customer | None, channel: str, facts: SendFacts
) -> Deferral | None:
    """Check the contact rules and cadence caps again at send time: a late worker must not send into quiet hours,
    nor past a cap that messages on other channels used up meanwhile. The rules are the planner's own
    (``rules.contact_rules.contact_rules_for``) with the override the row carries, so what the plan allowed (a
    policy's urgent override, an operator's "send now") is not undone here."""
    from app.recovery.planning import customer_zones
    from rules.contact_rules import Override, contact_rules_for, held_by
    from rules.timing import next_send_time

    if customer is None or message.policy_version_id is None:
        return None
    policy = facts.policy(message.policy_version_id)
    if policy is None:
        return None
    zones = customer_zones(customer)
    if not zones:
        return None
    now, windows, timing = facts.now, facts.windows(), policy.timing
    country, region = customer.country, customer.region
    rules = contact_rules_for(timing, windows, Override.from_dict(message.contact_override), country=country,
                              region=region)
    scheduled = next_send_time(now, zones, channel, rules, country=country, region=region,
                               history=facts.history(customer.id))
    if scheduled.send_at is not None and scheduled.send_at <= now:  # no grace: a minute early is quiet hours
        return None
    until = scheduled.send_at or now + timedelta(days=1)
    sources = held_by(scheduled.reasons, timing, windows, country=country, region=region, channel=channel)
    return Deferral(until, tuple(scheduled.reasons), tuple(h.as_dict() for h in sources))
