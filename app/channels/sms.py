"""SMS through Twilio's Programmable Messaging REST API, and Twilio's webhooks (statuses, inbound SMS).

No duplicate sends. Twilio's Messages API has no idempotency key, so a retry is only safe when we know the
first request created nothing:
- a connection that could not be opened, and HTTP 429, are retried with exponential backoff (Retry-After
  honoured);
- a 5xx, a read timeout or a connection dropped after the request went out are ambiguous: before sending
  again the sender *reconciles* by listing the recent messages to that number from our sender
  (``GET Messages.json?To=..&From=..``) and looking for one with the same body created since the first
  attempt. If one is there, that is our message and it is returned as accepted; if none is, the send is
  retried. If the lookup itself fails, the result is ``unknown`` (nothing is sent again; the dispatcher
  reconciles later, helped by the status callback URL carrying ``ref=<reference>``).
The reference also travels in the ``StatusCallback`` URL (``?ref=``), so a status callback can be tied to
our message even when the worker died before it stored the Twilio SID.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError

from app.channels.base import (
    Channel,
    ConfigurationError,
    DeliveryStatus,
    InboundMessage,
    InvalidMessageError,
    Keyword,
    OutboundMessage,
    SendResult,
    StatusUpdate,
    WebhookPayloadError,
    detect_keyword,
    require_channel,
)
from app.channels.http import post, provider_session

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
REFERENCE_PARAM = "ref"
SIGNATURE_HEADER = "X-Twilio-Signature"

#: synchronous errors that mean "this number cannot get SMS from us": fall back to another channel now
PERMANENT_ERRORS = {
    21211: "invalid 'To' number",
    21214: "'To' number cannot be reached",
    21217: "phone number does not appear to be valid",
    21407: "this phone number type does not support SMS",
    21408: "permission to send to this region is not enabled",
    21610: "recipient has opted out (replied STOP)",
    21612: "cannot route to this number",
    21614: "'To' number is not a valid mobile number",
    21635: "'To' number is a landline",
}
OPTED_OUT_ERRORS = {21610}
#: Twilio codes for "too many requests" (also sent as HTTP 429)
RATE_LIMIT_ERRORS = {20429, 14107}

_STATUS_MAP = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


class TwilioSender:
    """Sends SMS with ``POST {api}/2010-04-01/Accounts/{sid}/Messages.json``."""

    channel = Channel.SMS

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        *,
        messaging_service_sid: str | None = None,
        api_url: str = DEFAULT_API_URL,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not account_sid or not auth_token:
            raise ConfigurationError("Twilio needs an account SID and an auth token")
        if not from_number and not messaging_service_sid:
            raise ConfigurationError("Twilio needs a From number or a Messaging Service SID")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.api_url = api_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or provider_session(self.api_url)
        self.session.auth = (account_sid, auth_token)
        self._sleep = sleep

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> TwilioSender:
        """``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM`` (a number, or an ``MG...`` Messaging
        Service SID), ``TWILIO_API_URL`` (default ``https://api.twilio.com``)."""
        env = os.environ if environ is None else environ
        missing = [k for k in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM") if not env.get(k)]
        if missing:
            raise ConfigurationError(f"not set: {', '.join(missing)}")
        sender = env["TWILIO_FROM"]
        service = sender if sender.startswith("MG") else None
        return cls(
            env["TWILIO_ACCOUNT_SID"],
            env["TWILIO_AUTH_TOKEN"],
            None if service else sender,
            messaging_service_sid=service,
            api_url=env.get("TWILIO_API_URL") or DEFAULT_API_URL,
            **options,
        )

    @property
    def messages_url(self) -> str:
        return f"{self.api_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def message_url(self, sid: str) -> str:
        return f"{self.api_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"

    # -- sending ---------------------------------------------------------------------------------------------
    def form(self, message: OutboundMessage) -> dict[str, str]:
        """The form fields of the create request."""
        require_channel(message, Channel.SMS)
        if not message.text:
            raise InvalidMessageError("an SMS needs a body")
        data = {"To": message.to, "Body": message.text}
        if message.sender:
            data["From"] = message.sender
        elif self.messaging_service_sid:
            data["MessagingServiceSid"] = self.messaging_service_sid
        else:
            data["From"] = self.from_number or ""
        if message.status_callback:
            data["StatusCallback"] = with_reference(message.status_callback, message.reference)
        return data

    def send(self, message: OutboundMessage) -> SendResult:
        data = self.form(message)
        headers = {"X-Recoup-Reference": message.reference}  # ignored by Twilio; the sandbox counts by it
        started = datetime.now(UTC)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = post(self.session, self.messages_url, data=data, headers=headers, timeout=self.timeout)
            except requests.ConnectionError as exc:
                if _request_never_sent(exc) and attempt < self.max_attempts:
                    self._sleep(self._delay(attempt))
                    continue
                if _request_never_sent(exc):
                    return _transient(f"cannot connect to Twilio: {exc}", attempt)
                outcome = self._reconcile(data, started, attempt, f"connection lost: {exc}")
            except requests.Timeout as exc:  # a read timeout: Twilio may have created the message
                outcome = self._reconcile(data, started, attempt, f"timed out: {exc}")
            else:
                if response.status_code in (200, 201):
                    return _accepted(response.json(), attempt)
                body = _json_or_none(response)
                code = _int(body.get("code")) if body else None
                if response.status_code == 429 or code in RATE_LIMIT_ERRORS:
                    if attempt < self.max_attempts:
                        self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                        continue
                    return _transient(_error_text(response, body), attempt, code, _retry_after(response))
                if response.status_code >= 500:
                    outcome = self._reconcile(data, started, attempt, _error_text(response, body))
                else:
                    return _rejected(response, body, attempt)
            if outcome is not None:
                return outcome
            if attempt >= self.max_attempts:
                return _transient("Twilio kept failing; nothing was created", attempt)
            self._sleep(self._delay(attempt))

    def _reconcile(
        self, data: Mapping[str, str], started: datetime, attempt: int, problem: str
    ) -> SendResult | None:
        """After an ambiguous failure: the accepted result if Twilio has our message, ``None`` if it surely
        has not (safe to send again), an ``unknown`` result if we cannot tell."""
        try:
            found = self.find_message(data["To"], data["Body"], since=started, from_=data.get("From"))
        except (requests.RequestException, ValueError) as exc:
            log.warning("Twilio send outcome unknown (%s); lookup failed: %s", problem, exc)
            return SendResult(
                accepted=False,
                status="unknown",
                error_code="unknown",
                error_text=f"{problem}; lookup failed: {exc}",
                unknown=True,
                attempts=attempt,
            )
        if found is not None:
            log.info("Twilio send reconciled after %s: %s", problem, found.get("sid"))
            return _accepted(found, attempt)
        log.info("Twilio has no message after %s; sending again", problem)
        return None

    def find_message(
        self, to: str, body: str, *, since: datetime, from_: str | None = None
    ) -> dict[str, Any] | None:
        """The newest message to ``to`` with exactly ``body`` created at or after ``since`` (minus clock
        skew). Through a Messaging Service Twilio leaves ``from`` null until it has picked a sender, so a
        service's messages are never looked up by ``From`` (that would miss the one just accepted and send it
        twice)."""
        params = {"To": to, "PageSize": "50"}
        if from_ and not self.messaging_service_sid:
            params["From"] = from_
        response = self.session.get(self.messages_url, params=params, timeout=self.timeout)
        response.raise_for_status()
        cutoff = since - timedelta(seconds=120)
        for item in response.json().get("messages", []):
            created = _parse_rfc2822(item.get("date_created"))
            if item.get("body") == body and (created is None or created >= cutoff):
                return dict(item)
        return None

    def fetch(self, sid: str) -> dict[str, Any]:
        """``GET Messages/{sid}.json``: the message resource (status, error_code, num_segments...)."""
        response = self.session.get(self.message_url(sid), timeout=self.timeout)
        response.raise_for_status()
        return dict(response.json())

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return base * (0.5 + random.random() / 2)


def _request_never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection could not be opened, so Twilio cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError | NameResolutionError)


def _accepted(body: Mapping[str, Any], attempt: int) -> SendResult:
    return SendResult(
        accepted=True,
        provider_message_id=str(body.get("sid")),
        status=str(body.get("status") or "queued"),
        attempts=attempt,
        raw=dict(body),
    )


def _transient(
    text: str, attempt: int, code: int | None = None, retry_after: float | None = None
) -> SendResult:
    return SendResult(
        accepted=False,
        status="failed",
        error_code=str(code) if code else "unavailable",
        error_text=text,
        retryable=True,
        retry_after=retry_after,
        attempts=attempt,
    )


def _rejected(response: requests.Response, body: Mapping[str, Any] | None, attempt: int) -> SendResult:
    code = _int(body.get("code")) if body else None
    return SendResult(
        accepted=False,
        status="failed",
        error_code=str(code) if code is not None else str(response.status_code),
        error_text=_error_text(response, body),
        permanent=code in PERMANENT_ERRORS,
        opted_out=code in OPTED_OUT_ERRORS,
        attempts=attempt,
        raw=dict(body) if body else None,
    )


def _json_or_none(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_text(response: requests.Response, body: Mapping[str, Any] | None) -> str:
    if body and body.get("message"):
        return str(body["message"])
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _retry_after(response: requests.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_rfc2822(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None


def with_reference(url: str, reference: str) -> str:
    """``url`` with ``ref=<reference>`` added to its query (kept if already there)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == REFERENCE_PARAM for k, _ in query):
        query.append((REFERENCE_PARAM, reference))
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- webhook signatures --------------------------------------------------------------------------------------
Params = Mapping[str, Any] | Iterable[tuple[str, str]] | None


def _pairs(params: Params) -> list[tuple[str, str]]:
    if params is None:
        return []
    if hasattr(params, "lists"):  # werkzeug MultiDict keeps every value of a repeated field
        return [(k, v) for k, values in params.lists() for v in values]
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, (list, tuple)):
                out.extend((key, str(v)) for v in value)
            else:
                out.append((key, str(value)))
        return out
    return [(str(k), str(v)) for k, v in params]


def twilio_signature(auth_token: str, url: str, params: Params = None) -> str:
    """Base64 HMAC-SHA1 (key: auth token) over the URL followed by each POST parameter name+value, sorted by
    name (and by value within a repeated name), as Twilio signs its webhooks."""
    grouped: dict[str, set[str]] = {}
    for key, value in _pairs(params):
        grouped.setdefault(key, set()).add(value)
    payload = url + "".join(key + value for key in sorted(grouped) for value in sorted(grouped[key]))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its default port and with it: Twilio's own validator accepts either."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default and parts.hostname:
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        userinfo = parts.netloc.rpartition("@")[0]
        prefix = f"{userinfo}@" if userinfo else ""
        if parts.port == default:
            variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
        elif parts.port is None:
            variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return variants


def verify_twilio_signature(
    auth_token: str, url: str, params: Params, signature: str | None, *, body: bytes | None = None
) -> bool:
    """True when ``signature`` (the ``X-Twilio-Signature`` header) signs this request.

    ``url`` must be the URL Twilio requested: scheme, host, port, path and query as the public sees them
    (behind a proxy, rebuild it from the forwarded headers). ``params`` is the POST form (``request.form``).
    For JSON-bodied webhooks pass the raw ``body``: the URL's ``bodySHA256`` must match it and the params are
    not signed."""
    if not signature or not auth_token:
        return False
    query = dict(parse_qsl(urlsplit(url).query))
    if "bodySHA256" in query:
        if body is None or not hmac.compare_digest(hashlib.sha256(body).hexdigest(), query["bodySHA256"]):
            return False
        params = None
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, params), signature)
        for candidate in _url_variants(url)
    )


# -- webhook parsing -----------------------------------------------------------------------------------------
def _field(form: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = form.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def parse_status_callback(form: Mapping[str, Any], url: str | None = None) -> StatusUpdate:
    """A status callback (form POST to StatusCallback) as a :class:`StatusUpdate`.

    ``url`` (the callback URL as requested) supplies our reference from its ``ref`` query parameter."""
    sid = _field(form, "MessageSid", "SmsSid")
    raw_status = _field(form, "MessageStatus", "SmsStatus")
    if not sid or not raw_status:
        raise WebhookPayloadError("a Twilio status callback needs MessageSid and MessageStatus")
    status = _STATUS_MAP.get(raw_status.lower())
    if status is None:
        raise WebhookPayloadError(f"unknown Twilio message status {raw_status!r}")
    error_code = _field(form, "ErrorCode")
    reference = _field(form, REFERENCE_PARAM)
    if url:
        reference = dict(parse_qsl(urlsplit(url).query)).get(REFERENCE_PARAM) or reference
    return StatusUpdate(
        channel=Channel.SMS,
        provider_message_id=sid,
        status=status,
        error_code=error_code,
        error_text=_field(form, "ErrorMessage") or (PERMANENT_ERRORS.get(_int(error_code) or 0)),
        timestamp=_parse_dlr_date(_field(form, "RawDlrDoneDate")),
        recipient=_field(form, "To"),
        reference=reference,
        opted_out=error_code in {str(c) for c in OPTED_OUT_ERRORS},
        raw=dict(form.items()),
    )


def _parse_dlr_date(value: str | None) -> datetime | None:
    """``RawDlrDoneDate`` is YYMMDDhhmm (carrier time, taken as UTC)."""
    if not value or not re.fullmatch(r"\d{10}(\d{2})?", value):
        return None
    try:
        return datetime.strptime(value[:10], "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


_OPT_OUT_TYPES = {"STOP": Keyword.STOP, "START": Keyword.START, "HELP": Keyword.HELP}


def parse_inbound(form: Mapping[str, Any]) -> InboundMessage:
    """An inbound SMS webhook as an :class:`InboundMessage`; ``OptOutType`` (Advanced Opt-Out) wins over our
    own keyword detection, which follows Twilio's default lists."""
    sid = _field(form, "MessageSid", "SmsMessageSid", "SmsSid")
    sender = _field(form, "From")
    if not sid or not sender:
        raise WebhookPayloadError("a Twilio inbound webhook needs MessageSid and From")
    body = str(form.get("Body") or "")
    opt_out_type = (_field(form, "OptOutType") or "").upper()
    keyword = _OPT_OUT_TYPES.get(opt_out_type) or detect_keyword(body)
    return InboundMessage(
        channel=Channel.SMS,
        sender=sender,
        recipient=_field(form, "To") or "",
        body=body,
        keyword=keyword,
        provider_message_id=sid,
        timestamp=None,
        raw=dict(form.items()),
    )


def twiml_response(message: str | None = None) -> str:
    """The TwiML an inbound webhook answers with: empty (no reply) or one reply message."""
    if not message:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{xml_escape(message)}</Message></Response>'
    )
