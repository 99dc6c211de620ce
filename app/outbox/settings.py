"""What the outbox is configured with: the channels a person is written on, and the dispatcher's settings."""

from __future__ import annotations

import os

from flask import current_app

from rules.vocabulary import CHANNELS, Channel

#: the outbox channels that reach a person (every other row is an ``OutboxTask``: a charge, an escalation)
PERSON_CHANNELS: tuple[Channel, ...] = CHANNELS
#: the customer field that addresses each channel
ADDRESS_FIELD: dict[Channel, str] = {Channel.EMAIL: "email", Channel.SMS: "phone_e164", Channel.WHATSAPP: "phone_e164"}

#: configuration keys read here (``app.config.get``) and their defaults
DEFAULTS: dict[str, float] = {
    "DISPATCH_CONCURRENCY": 32,  # provider calls in flight per worker process
    "DISPATCH_LEASE_SECONDS": 60,  # a claim not renewed for this long belongs to a dead worker
    "DISPATCH_BUDGET_SECONDS": 25,  # one dispatch run stops claiming after this long (the next run goes on)
    "WHATSAPP_RECONCILE_SECONDS": 600,  # wait for a status webhook before an unknown WhatsApp goes to review
    "UNKNOWN_REVIEW_HOURS": 24,  # an unknown row nobody could settle by then goes to a person
    "WHATSAPP_DELIVERY_TIMEOUT_MINUTES": 60,  # sent but not delivered by then: the step falls back
    "CONSOLIDATE_WINDOW_HOURS": 24,  # other open cases' reminders due within this go in one message
}


def setting(name: str) -> float:
    """``app.config[name]``, else the environment variable of that name, else the default above."""
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    return float(DEFAULTS[name] if value in (None, "") else value)
