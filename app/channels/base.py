"""The one interface every outreach channel speaks, and the values that cross it.

A sender turns an :class:`OutboundMessage` into a :class:`SendResult` and never raises for a provider's
answer: the dispatcher decides what to do from the result's flags. What comes back later from the providers
(delivery statuses, replies) is parsed into :class:`StatusUpdate` and :class:`InboundMessage` by each channel
module. Nothing here touches the database, Flask or the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from rules.vocabulary import Channel  # its home is the shared vocabulary; senders and their callers find it here


class DeliveryStatus(StrEnum):
    """Provider statuses normalised across channels."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"

    @property
    def rank(self) -> int:
        """How far along the message got; statuses arrive out of order, so keep the highest as current."""
        return _RANK[self]

    @property
    def is_failure(self) -> bool:
        return self in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED)

    def supersedes(self, other: DeliveryStatus | str | None) -> bool:
        """True when this status should replace ``other`` as the message's current status."""
        if other is None:
            return True
        return self.rank > DeliveryStatus(other).rank


# A delivered/read receipt is proof of delivery even when a stale failure arrives after it.
_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.UNDELIVERED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


class Keyword(StrEnum):
    STOP = "STOP"
    START = "START"
    HELP = "HELP"


# Twilio's default keyword lists (Advanced Opt-Out defaults); matching is on the whole message,
# case-insensitive.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def detect_keyword(body: str | None) -> Keyword | None:
    """STOP / START / HELP when the whole message (trimmed, any case, trailing punctuation ignored) is one."""
    if not body:
        return None
    word = body.strip().strip(".!").strip().upper()
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in START_WORDS:
        return Keyword.START
    if word in HELP_WORDS:
        return Keyword.HELP
    return None


@dataclass(frozen=True)
class TemplateParam:
    """One parameter of a WhatsApp template message.

    ``type`` is ``text``, ``currency`` or ``date_time``; ``text`` is the value of a text parameter and the
    ``fallback_value`` of the others. ``name`` is set for templates created with named parameters.
    ``component`` is ``body``, ``header`` or ``button`` (then ``button_index`` and ``sub_type`` say which
    button).
    """

    text: str
    type: str = "text"
    currency: str | None = None
    amount_1000: int | None = None
    name: str | None = None
    component: str = "body"
    button_index: int = 0
    sub_type: str = "url"


@dataclass(frozen=True)
class OutboundMessage:
    """What the dispatcher hands a sender. ``reference`` is our message id and the idempotency key.

    email: ``to`` is an address; ``subject``, ``text`` and optionally ``html``; ``unsubscribe_url`` (https,
    RFC 8058 one-click) and ``unsubscribe_mailto`` become List-Unsubscribe headers.
    sms: ``to`` is E.164; ``text`` is the body; ``status_callback`` is where Twilio posts statuses.
    whatsapp: ``to`` is E.164 (or bare digits); either ``template_name`` + ``template_language`` +
    ``template_params``, or free-form ``text``, which is only allowed inside the 24-hour customer-service
    window opened by the customer's last message at ``last_inbound_at``.
    """

    channel: Channel
    to: str
    reference: str
    text: str = ""
    subject: str | None = None
    html: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_params: tuple[TemplateParam, ...] = ()
    status_callback: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    sender: str | None = None  # overrides the sender's configured From (email address or phone number)
    last_inbound_at: datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """The synchronous outcome of one send.

    Exactly one of these holds:
    - ``accepted``: the provider took the message (``provider_message_id`` is set);
    - ``unknown``: the request may have been processed (a timeout, or a connection dropped after the
      request went out). Do not send again blindly: reconcile by reference (status webhooks carry it)
      or hold it for review;
    - ``permanent``: this recipient cannot get it on this channel (opted out, invalid number, not on
      WhatsApp, hard bounce, template rejected); move to the next fallback channel now. ``opted_out``
      says the customer opted out of the channel;
    - ``retryable``: a transient failure (rate limit, provider outage, SMTP 4xx) with nothing sent; try
      the same channel again later, after ``retry_after`` seconds if given;
    - none: our own fault (bad credentials, bad request); the message fails on this channel and
      someone should look.
    """

    accepted: bool
    provider_message_id: str | None = None
    status: str = "queued"
    error_code: str | None = None
    error_text: str | None = None
    permanent: bool = False
    opted_out: bool = False
    retryable: bool = False
    unknown: bool = False
    retry_after: float | None = None
    attempts: int = 1
    raw: Mapping[str, Any] | None = None

    @property
    def outcome(self) -> str:
        """``accepted`` | ``unknown`` | ``permanent`` | ``retryable`` | ``error``."""
        if self.accepted:
            return "accepted"
        if self.unknown:
            return "unknown"
        if self.permanent:
            return "permanent"
        if self.retryable:
            return "retryable"
        return "error"


@runtime_checkable
class ChannelSender(Protocol):
    channel: Channel

    def send(self, message: OutboundMessage) -> SendResult: ...


@dataclass(frozen=True)
class StatusUpdate:
    """One delivery status reported by a provider; ``reference`` is ours when the provider echoes it."""

    channel: Channel
    provider_message_id: str
    status: DeliveryStatus
    error_code: str | None = None
    error_text: str | None = None
    timestamp: datetime | None = None  # None when the provider does not say (use the time it arrived)
    recipient: str | None = None
    reference: str | None = None
    opted_out: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)
    recipient_user_id: str | None = None  # WhatsApp: the recipient's business-scoped user id (BSUID)


@dataclass(frozen=True)
class InboundMessage:
    """A message a customer sent us. ``sender`` is the customer (E.164 for SMS/WhatsApp), ``recipient`` is
    us. On WhatsApp ``sender_user_id`` is the sender's business-scoped user id (BSUID); ``sender`` is empty when
    Meta withholds the number (a user with a username), and then the user id alone says who wrote."""

    channel: Channel
    sender: str
    recipient: str
    body: str
    keyword: Keyword | None
    provider_message_id: str
    timestamp: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    sender_user_id: str | None = None


class ChannelError(Exception):
    """Base of the channel package's errors."""


class ConfigurationError(ChannelError):
    """A sender is missing settings or was given unusable ones."""


class InvalidMessageError(ChannelError, ValueError):
    """The message cannot be sent on this channel as built (wrong channel, no recipient, no body)."""


class SignatureError(ChannelError):
    """A webhook's signature is missing or wrong."""


class WebhookPayloadError(ChannelError, ValueError):
    """A webhook body is not in the provider's format."""


def require_channel(message: OutboundMessage, channel: Channel) -> None:
    if message.channel != channel:
        raise InvalidMessageError(f"a {message.channel} message was given to the {channel} sender")
    if not message.to:
        raise InvalidMessageError("the message has no recipient")

