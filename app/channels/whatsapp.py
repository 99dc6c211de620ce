"""WhatsApp through Meta's Cloud API (Graph API): messages, webhooks, and message-template management.

Messages: ``POST {api}/{version}/{phone-number-id}/messages`` with a Bearer token. Reminders are UTILITY
template messages; free-form text is only allowed inside the 24-hour customer-service window (checked here,
before the request, from ``OutboundMessage.last_inbound_at``, because Meta otherwise accepts the message and
fails it later with 131047). Our reference travels as ``biz_opaque_callback_data`` and comes back on every
status webhook.

No duplicate sends: the Cloud API has no idempotency key and no way to list sent messages, so a retry happens
only when Meta certainly did not take the message: HTTP 429 or a throughput error (130429, 80007, 4), a Graph
error envelope on a 5xx (1, 2, 131000: Meta's "retry" answers), or a connection that never opened. A read
timeout, a dropped connection or a 5xx without a Graph error body returns ``unknown``: the status webhooks
(which carry the reference) settle it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import requests
from babel.numbers import format_currency

from app.channels.base import (
    Channel,
    ConfigurationError,
    DeliveryStatus,
    InboundMessage,
    InvalidMessageError,
    OutboundMessage,
    SendResult,
    StatusUpdate,
    TemplateParam,
    WebhookPayloadError,
    detect_keyword,
    require_channel,
)
from app.channels.http import post, provider_session
from app.channels.sms import _request_never_sent

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)

#: synchronous errors after which this message cannot go by WhatsApp: fall back to another channel now
PERMANENT_ERRORS = {
    100: "invalid parameter",
    131008: "required parameter missing",
    131009: "parameter value is not valid",
    131026: "message undeliverable (not on WhatsApp, old client, or terms not accepted)",
    131047: "re-engagement: more than 24 hours since the customer's last message; send a template",
    131050: "the customer stopped marketing messages",
    131051: "unsupported message type",
    132000: "template parameter count mismatch",
    132001: "template does not exist in this language",
    132005: "translated text too long",
    132007: "template format character policy violated",
    132012: "template parameter format mismatch",
    132015: "template paused",
    132016: "template disabled",
}
OPTED_OUT_ERRORS = {131050}
#: transient: try the same channel later (131056: too many messages to this user; 131049: held back by Meta)
RETRYABLE_ERRORS = {1, 2, 4, 80007, 130429, 131000, 131049, 131056}
#: retried here, at once with backoff: the request was refused before anything was sent
RETRY_NOW_ERRORS = {1, 2, 4, 80007, 130429, 131000}
#: transient, but for minutes (per-user limits): the dispatcher reschedules instead of retrying here
RETRY_LATER_ERRORS = {131049, 131056}
AUTH_ERRORS = {190}

_STATUS_MAP = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}


def split_api_url(api_url: str, version: str | None = None) -> tuple[str, str]:
    """``https://graph.facebook.com/v21.0`` -> (``https://graph.facebook.com``, ``v21.0``)."""
    base = api_url.rstrip("/")
    match = re.search(r"/(v\d+\.\d+)$", base)
    if match:
        return base[: match.start()], version or match.group(1)
    return base, version or DEFAULT_API_VERSION


def wa_number(phone: str) -> str:
    """The digits the Cloud API wants for ``to`` (country code, no ``+``)."""
    digits = re.sub(r"\D", "", phone)
    if not digits:
        raise InvalidMessageError(f"not a phone number: {phone!r}")
    return digits


def in_customer_service_window(last_inbound_at: datetime | None, now: datetime | None = None) -> bool:
    """True while free-form messages are allowed: within 24 hours of the customer's last inbound message."""
    if last_inbound_at is None:
        return False
    now = now or datetime.now(UTC)
    if last_inbound_at.tzinfo is None:
        last_inbound_at = last_inbound_at.replace(tzinfo=UTC)
    return timedelta(0) <= now - last_inbound_at < CUSTOMER_SERVICE_WINDOW


def currency_param(
    amount: Decimal | int | str,
    currency: str,
    locale: str,
    *,
    name: str | None = None,
    component: str = "body",
) -> TemplateParam:
    """A ``currency`` template parameter: ``amount_1000`` = amount x 1000, and the Babel-formatted amount in
    the customer's locale as the ``fallback_value`` (what most clients show)."""
    value = Decimal(str(amount))
    currency = currency.upper()
    return TemplateParam(
        text=format_currency(value, currency, locale=locale),
        type="currency",
        currency=currency.upper(),
        amount_1000=int((value * 1000).to_integral_value(rounding=ROUND_HALF_UP)),
        name=name,
        component=component,
    )


def _parameter(param: TemplateParam) -> dict[str, Any]:
    if param.type == "text":
        out: dict[str, Any] = {"type": "text", "text": param.text}
    elif param.type == "currency":
        if param.currency is None or param.amount_1000 is None:
            raise InvalidMessageError("a currency parameter needs currency and amount_1000")
        out = {
            "type": "currency",
            "currency": {
                "fallback_value": param.text,
                "code": param.currency,
                "amount_1000": param.amount_1000,
            },
        }
    elif param.type == "date_time":
        out = {"type": "date_time", "date_time": {"fallback_value": param.text}}
    elif param.type == "payload":
        out = {"type": "payload", "payload": param.text}
    else:
        raise InvalidMessageError(f"unsupported template parameter type {param.type!r}")
    if param.name:
        out["parameter_name"] = param.name
    return out


def template_components(params: tuple[TemplateParam, ...] | list[TemplateParam]) -> list[dict[str, Any]]:
    """Group parameters into the header / body / button components the Cloud API expects, in that order."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for param in params:
        key = (param.component, param.button_index if param.component == "button" else 0, param.sub_type)
        groups[key].append(_parameter(param))
    order = {"header": 0, "body": 1, "button": 2}
    components = []
    for (component, index, sub_type), parameters in sorted(
        groups.items(), key=lambda g: (order.get(g[0][0], 3), g[0][1])
    ):
        entry: dict[str, Any] = {"type": component, "parameters": parameters}
        if component == "button":
            entry["sub_type"] = sub_type
            entry["index"] = str(index)
        components.append(entry)
    return components


class WhatsAppSender:
    """Sends template (and in-window text) messages through the Cloud API; manages message templates."""

    channel = Channel.WHATSAPP

    def __init__(
        self,
        token: str,
        phone_number_id: str,
        *,
        api_url: str = DEFAULT_API_URL,
        api_version: str | None = None,
        waba_id: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token or not phone_number_id:
            raise ConfigurationError("WhatsApp needs an access token and a phone number id")
        self.token = token
        self.phone_number_id = phone_number_id
        self.api_url, self.api_version = split_api_url(api_url, api_version)
        self.waba_id = waba_id
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or provider_session(self.api_url)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> WhatsAppSender:
        """``WHATSAPP_TOKEN``, ``WHATSAPP_PHONE_NUMBER_ID``, ``WHATSAPP_API_URL`` (default
        ``https://graph.facebook.com``; may end with the version, e.g. ``.../v21.0``), and optionally
        ``WHATSAPP_API_VERSION`` and ``WHATSAPP_WABA_ID`` (for template management)."""
        env = os.environ if environ is None else environ
        missing = [k for k in ("WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID") if not env.get(k)]
        if missing:
            raise ConfigurationError(f"not set: {', '.join(missing)}")
        options.setdefault("api_url", env.get("WHATSAPP_API_URL") or DEFAULT_API_URL)
        options.setdefault("api_version", env.get("WHATSAPP_API_VERSION") or None)
        options.setdefault("waba_id", env.get("WHATSAPP_WABA_ID") or None)
        return cls(env["WHATSAPP_TOKEN"], env["WHATSAPP_PHONE_NUMBER_ID"], **options)

    def _url(self, *path: str) -> str:
        return "/".join([self.api_url, self.api_version, *path])

    @property
    def messages_url(self) -> str:
        return self._url(self.phone_number_id, "messages")

    # -- sending ---------------------------------------------------------------------------------------------
    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The JSON body of the send request."""
        require_channel(message, Channel.WHATSAPP)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": wa_number(message.to),
            "biz_opaque_callback_data": message.reference[:512],
        }
        if message.template_name:
            template: dict[str, Any] = {
                "name": message.template_name,
                "language": {"code": message.template_language or "en_US", "policy": "deterministic"},
            }
            components = template_components(message.template_params)
            if components:
                template["components"] = components
            body.update(type="template", template=template)
        elif message.text:
            body.update(type="text", text={"preview_url": True, "body": message.text})
        else:
            raise InvalidMessageError("a WhatsApp message needs a template or a text")
        return body

    def send(self, message: OutboundMessage) -> SendResult:
        payload = self.payload(message)
        if payload["type"] == "text" and not in_customer_service_window(
            message.last_inbound_at, self._clock()
        ):
            return SendResult(
                accepted=False,
                status="failed",
                error_code="131047",
                error_text="outside the 24-hour customer-service window: only a template can be sent",
                permanent=True,
                attempts=0,
            )
        attempt = 0
        while True:
            attempt += 1
            try:
                response = post(self.session, self.messages_url, json_body=payload, timeout=self.timeout)
            except requests.ConnectionError as exc:
                if _request_never_sent(exc):
                    if attempt < self.max_attempts:
                        self._sleep(self._delay(attempt))
                        continue
                    return _result_error(None, f"cannot connect: {exc}", attempt, retryable=True)
                return _unknown(f"connection lost: {exc}", attempt)
            except requests.Timeout as exc:
                return _unknown(f"timed out: {exc}", attempt)
            if response.status_code == 200:
                return _accepted(response.json(), attempt)
            error = _graph_error(response)
            code = _int(error.get("code")) if error else None
            if code in RETRY_NOW_ERRORS or (response.status_code == 429 and code not in RETRY_LATER_ERRORS):
                if attempt < self.max_attempts:
                    self._sleep(self._delay(attempt))
                    continue
            elif response.status_code >= 500 and error is None:
                return _unknown(f"HTTP {response.status_code} without a Graph error", attempt)
            return _rejected(response, error, attempt)

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return base * (0.5 + random.random() / 2)

    # -- templates -------------------------------------------------------------------------------------------
    def _templates_url(self) -> str:
        if not self.waba_id:
            raise ConfigurationError("template management needs the WhatsApp Business Account id (waba_id)")
        return self._url(self.waba_id, "message_templates")

    def submit_template(
        self,
        name: str,
        language: str,
        components: list[dict[str, Any]],
        *,
        category: str = "UTILITY",
        parameter_format: str | None = None,
    ) -> dict[str, Any]:
        """``POST /{waba}/message_templates``; returns ``{"id", "status", "category"}`` (status usually
        PENDING).

        Raises :class:`TemplateApiError` on a Graph error."""
        if not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            raise InvalidMessageError("template names use lowercase letters, digits and underscores")
        body: dict[str, Any] = {
            "name": name,
            "language": language,
            "category": category,
            "components": components,
        }
        if parameter_format:
            body["parameter_format"] = parameter_format
        response = self.session.post(self._templates_url(), json=body, timeout=self.timeout)
        return _graph_json(response)

    def fetch_template(self, template_id: str) -> dict[str, Any]:
        """``GET /{template-id}``: name, language, status, category, components (and ``rejected_reason``)."""
        response = self.session.get(
            self._url(template_id),
            params={"fields": "id,name,language,status,category,components,rejected_reason"},
            timeout=self.timeout,
        )
        return _graph_json(response)

    def list_templates(self, name: str | None = None) -> list[dict[str, Any]]:
        """``GET /{waba}/message_templates`` (optionally by name), following paging."""
        params: dict[str, str] | None = {"name": name} if name else {}
        url: str | None = self._templates_url()
        out: list[dict[str, Any]] = []
        while url:
            data = _graph_json(self.session.get(url, params=params, timeout=self.timeout))
            out.extend(data.get("data", []))
            url, params = data.get("paging", {}).get("next"), None
        return out


class TemplateApiError(Exception):
    def __init__(self, status: int, code: int | None, message: str, body: Mapping[str, Any] | None) -> None:
        super().__init__(f"HTTP {status} ({code}): {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


def _graph_json(response: requests.Response) -> dict[str, Any]:
    if response.ok:
        return dict(response.json())
    error = _graph_error(response)
    raise TemplateApiError(
        response.status_code,
        _int(error.get("code")) if error else None,
        str(error.get("message")) if error else response.text[:200],
        error,
    )


def _graph_error(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _accepted(body: Mapping[str, Any], attempt: int) -> SendResult:
    messages = body.get("messages") or [{}]
    return SendResult(
        accepted=True,
        provider_message_id=messages[0].get("id"),
        status=messages[0].get("message_status") or "accepted",
        attempts=attempt,
        raw=dict(body),
    )


def _unknown(text: str, attempt: int) -> SendResult:
    log.warning("WhatsApp send outcome unknown: %s", text)
    return SendResult(
        accepted=False,
        status="unknown",
        error_code="unknown",
        error_text=text,
        unknown=True,
        attempts=attempt,
    )


def _result_error(code: int | None, text: str, attempt: int, *, retryable: bool = False) -> SendResult:
    return SendResult(
        accepted=False,
        status="failed",
        error_code=str(code) if code is not None else "unavailable",
        error_text=text,
        retryable=retryable,
        attempts=attempt,
    )


def _rejected(response: requests.Response, error: Mapping[str, Any] | None, attempt: int) -> SendResult:
    code = _int(error.get("code")) if error else None
    text = str(error.get("message")) if error else f"HTTP {response.status_code}: {response.text[:200]}"
    details = (error or {}).get("error_data", {})
    if isinstance(details, dict) and details.get("details"):
        text = f"{text}: {details['details']}"
    retryable = (
        code in RETRYABLE_ERRORS
        or response.status_code == 429
        or (code is None and response.status_code >= 500)
    )
    return SendResult(
        accepted=False,
        status="failed",
        error_code=str(code) if code is not None else str(response.status_code),
        error_text=text,
        permanent=code in PERMANENT_ERRORS,
        opted_out=code in OPTED_OUT_ERRORS,
        retryable=retryable and code not in PERMANENT_ERRORS,
        attempts=attempt,
        raw={"error": dict(error)} if error else None,
    )


# -- webhooks ------------------------------------------------------------------------------------------------
def verify_subscription(params: Mapping[str, str], verify_token: str) -> str | None:
    """The GET verification handshake: the ``hub.challenge`` to answer with (HTTP 200, as the raw body) when
    ``hub.mode`` is ``subscribe`` and ``hub.verify_token`` matches; ``None`` means answer 403."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token") or ""
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    challenge = params.get("hub.challenge")
    return challenge if challenge is not None else None


def whatsapp_signature(app_secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body, keyed with the app secret>``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_whatsapp_signature(app_secret: str, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` (the ``X-Hub-Signature-256`` header) signs the raw request ``body`` bytes."""
    if not signature or not app_secret:
        return False
    return hmac.compare_digest(whatsapp_signature(app_secret, body), signature.strip().lower())


@dataclass(frozen=True)
class TemplateStatusUpdate:
    """A ``message_template_status_update`` webhook: the template's new ``event`` (APPROVED, REJECTED,
    ...)."""

    template_id: str
    name: str | None
    language: str | None
    event: str
    reason: str | None = None
    category: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WhatsAppWebhook:
    """Everything one webhook POST carried."""

    statuses: list[StatusUpdate] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    template_updates: list[TemplateStatusUpdate] = field(default_factory=list)


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _inbound_text(message: Mapping[str, Any]) -> str:
    kind = message.get("type")
    if kind == "text":
        return str(message.get("text", {}).get("body", ""))
    if kind == "button":
        return str(message.get("button", {}).get("text", ""))
    if kind == "interactive":
        interactive = message.get("interactive", {})
        reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
        return str(reply.get("title", ""))
    return ""


def parse_webhook(payload: Mapping[str, Any] | bytes | str) -> WhatsAppWebhook:
    """Statuses, inbound messages and template status updates from a webhook body (raw bytes or parsed JSON).

    Unknown status values and message types are kept out of ``statuses`` but logged, so one odd entry does not
    make Meta redeliver the whole batch."""
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise WebhookPayloadError(f"not JSON: {exc}") from exc
        except RecursionError:  # signed, yet nested deeper than a parser should follow
            raise WebhookPayloadError("the body nests too deeply") from None
    if not isinstance(payload, Mapping) or not isinstance(payload.get("entry"), list):
        raise WebhookPayloadError("a WhatsApp webhook has an 'entry' list")
    out = WhatsAppWebhook()
    for entry in payload["entry"]:
        for change in entry.get("changes", []) if isinstance(entry, Mapping) else []:
            value = change.get("value") or {}
            if change.get("field") == "message_template_status_update":
                out.template_updates.append(
                    TemplateStatusUpdate(
                        template_id=str(value.get("message_template_id", "")),
                        name=value.get("message_template_name"),
                        language=value.get("message_template_language"),
                        event=str(value.get("event", "")),
                        reason=value.get("reason"),
                        category=value.get("message_template_category"),
                        raw=dict(value),
                    )
                )
                continue
            if change.get("field") != "messages":
                continue
            business_number = str((value.get("metadata") or {}).get("display_phone_number", ""))
            contacts = [c for c in value.get("contacts") or [] if isinstance(c, Mapping)]
            for status in value.get("statuses", []):
                normalised = _STATUS_MAP.get(str(status.get("status", "")).lower())
                if normalised is None or not status.get("id"):
                    log.info("ignoring WhatsApp status %r", status.get("status"))
                    continue
                errors = status.get("errors") or []
                first = errors[0] if errors else {}
                code = first.get("code")
                out.statuses.append(
                    StatusUpdate(
                        channel=Channel.WHATSAPP,
                        provider_message_id=str(status["id"]),
                        status=normalised,
                        error_code=str(code) if code is not None else None,
                        error_text=first.get("message") or first.get("title"),
                        timestamp=_timestamp(status.get("timestamp")),
                        recipient=status.get("recipient_id"),
                        reference=status.get("biz_opaque_callback_data"),
                        opted_out=_int(code) in OPTED_OUT_ERRORS,
                        raw=dict(status),
                        recipient_user_id=_user_id(
                            status.get("recipient_user_id"), contacts, status.get("recipient_id")
                        ),
                    )
                )
            for message in value.get("messages", []):
                phone = _digits(message.get("from"))
                user_id = _user_id(message.get("from_user_id"), contacts, phone)
                if not message.get("id") or not (phone or user_id):
                    continue
                body = _inbound_text(message)
                out.messages.append(
                    InboundMessage(
                        channel=Channel.WHATSAPP,
                        sender="+" + phone if phone else "",  # withheld: the user id alone says who wrote
                        recipient=business_number,
                        body=body,
                        keyword=detect_keyword(body),
                        provider_message_id=str(message["id"]),
                        timestamp=_timestamp(message.get("timestamp")),
                        raw={"message": dict(message), "contacts": value.get("contacts", [])},
                        sender_user_id=user_id,
                    )
                )
    return out


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", value) if isinstance(value, str) else ""


def _user_id(given: Any, contacts: list[Mapping[str, Any]], phone: Any) -> str | None:
    """The business-scoped user id (BSUID) of a status's recipient or a message's sender: as the entry names it,
    else from the contact with that phone number, else from the only contact there is."""
    if isinstance(given, str) and given.strip():
        return given.strip()[:160]
    digits = _digits(phone)
    match = [c for c in contacts if digits and _digits(c.get("wa_id")) == digits] or (
        contacts if len(contacts) == 1 else []
    )
    found = match[0].get("user_id") if match else None
    return found.strip()[:160] if isinstance(found, str) and found.strip() else None
