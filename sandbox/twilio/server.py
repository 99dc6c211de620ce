"""A Twilio Programmable Messaging simulator: the Messages resource, signed status callbacks, inbound SMS.

Wire format as Twilio's: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form, HTTP Basic auth) ->
201 with the snake_case message resource; errors as ``{"code", "message", "more_info", "status"}``. Status
callbacks are form POSTs signed with ``X-Twilio-Signature`` (HMAC-SHA1 with the auth token), sent on a
background thread after small delays: ``sent`` then ``delivered``, or ``undelivered`` / ``failed`` with an
``ErrorCode``.

Behaviour by destination number: Twilio's magic test numbers (+15005550001 invalid, +15005550002 cannot route,
+15005550003 no international permission, +15005550004 opted out, +15005550009 not a mobile) and whatever the
control API sets. Control routes (besides the harness's ``requests``, ``reset``, ``faults``):

    GET/POST /_control/numbers     {"number": "+1555...", "behaviour": "deliver|invalid|landline|opted_out|
                                    cannot_route|undeliverable|failed|silent"}  (undeliverable/failed may
                                    carry ":CODE", e.g. "undeliverable:30005")
    POST /_control/inbound         {"from": "+1555...", "body": "STOP", "to"?: ..., "url"?: ...}: POSTs a
    signed
                                    inbound webhook (with OptOutType for STOP/START/HELP) and applies the
                                    opt-out
    GET  /_control/messages        every message resource, with our reference
    GET  /_control/references      {"<reference>": count}: how many messages each of our references produced
    GET  /_control/callbacks       every callback delivered and what our server answered
    POST /_control/config          {"status_callback_url", "inbound_url", "send_status_callbacks", "delays": [d1, d2],
    "response_delay"}

Custom faults (``POST /_control/faults``): ``accept_then_timeout`` (create the message, then stall ``seconds``
before answering) and ``accept_then_500`` (create it, then answer 500), the two ways a client can be left
unsure. ``GET /inbox`` and ``GET /inbox/<number>`` show what each phone received (links open in a new tab); with
``inbox_file=PATH`` (the demo) messages, statuses and inbound texts are also kept in that file and read back on
start, so the inbox outlives a restart.
"""

from __future__ import annotations

import html
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote

import requests
from werkzeug.wrappers import Request, Response

from rules.sms_length import sms_segments
from sandbox.common import InboxFile, WebhookScheduler, linkify, page, post_webhook
from sandbox.harness import SimulatorServer, json_response
from sandbox.twilio import keywords, signature

API = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "sandbox-twilio-auth-token"
DEFAULT_FROM = "+15550001111"

MAGIC_NUMBERS = {
    "+15005550001": "invalid",
    "+15005550002": "cannot_route",
    "+15005550003": "no_permission",
    "+15005550004": "opted_out",
    "+15005550009": "landline",
}
SYNC_ERRORS = {  # behaviour -> (code, message)
    "invalid": (21211, "The 'To' number {to} is not a valid phone number."),
    "cannot_route": (
        21612,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number",
    ),
    "no_permission": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by {to}",
    ),
    "landline": (21614, "'To' number {to} is not a valid mobile number"),
    "opted_out": (21610, "Attempt to send to unsubscribed recipient"),
}
BEHAVIOURS = {"deliver", "undeliverable", "failed", "silent", *SYNC_ERRORS}
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MESSAGES = re.compile(rf"^/{API}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/.]+))?\.json$")


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0), usegmt=False).replace("-0000", "+0000")


def _error(code: int, message: str, status: int = 400) -> Response:
    return json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status,
    )


class TwilioSimulator(SimulatorServer):
    name = "twilio"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        from_number: str = DEFAULT_FROM,
        status_callback_url: str | None = None,
        inbound_url: str | None = None,
        delays: tuple[float, float] = (0.05, 0.1),
        response_delay: float = 0.0,
        numbers: dict[str, str] | None = None,
        callback_workers: int = 4,
        inbox_file: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.status_callback_url = status_callback_url  # used when a message has no StatusCallback
        self.send_status_callbacks = True  # off: statuses still advance (and show in lookups), nothing is POSTed
        self.inbound_url = inbound_url
        self.delays = tuple(delays)
        self.response_delay = response_delay
        self.behaviours: dict[str, str] = dict(numbers or {})
        self.opted_out: set[str] = set()
        self.messages: dict[str, dict[str, Any]] = {}
        self.references: Counter[str] = Counter()
        self.callbacks: list[dict[str, Any]] = []
        self.inbound: list[dict[str, Any]] = []
        self._workers = callback_workers
        self._scheduler: WebhookScheduler | None = None
        self._local = threading.local()
        self.inbox_file = InboxFile(inbox_file) if inbox_file else None
        if self.inbox_file is not None:
            self._reload(self.inbox_file.load())

    def _keep(self, event: dict[str, Any]) -> None:
        if self.inbox_file is not None:
            self.inbox_file.append(event)

    def _reload(self, events: list[dict[str, Any]]) -> None:
        """What an earlier run kept (``inbox_file``): messages with their last status, inbound texts, opt-outs."""
        for event in events:
            kind = event.get("kind")
            if kind == "message":
                message = dict(event["message"])
                self.messages[message["sid"]] = message
                if message.get("_reference"):
                    self.references[message["_reference"]] += 1
            elif kind == "status" and event.get("sid") in self.messages:
                self.messages[event["sid"]].update(event.get("fields") or {})
            elif kind == "inbound":
                record = dict(event["record"])
                self.inbound.append(record)
                (self.opted_out.add if record.get("opted_out") else self.opted_out.discard)(record["from"])

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> TwilioSimulator:
        self._scheduler = WebhookScheduler(self._workers, name="twilio-callbacks")
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None

    def reset(self) -> None:
        super().reset()
        if self._scheduler is not None:
            self._scheduler.clear()
        with self._lock:
            self.behaviours.clear()
            self.opted_out.clear()
            self.messages.clear()
            self.references.clear()
            self.callbacks.clear()
            self.inbound.clear()
        if self.inbox_file is not None:
            self.inbox_file.clear()

    def wait_for_callbacks(self, timeout: float = 10.0) -> bool:
        """Block until every scheduled status callback has been delivered."""
        return self._scheduler.wait_idle(timeout) if self._scheduler else True

    def set_number(self, number: str, behaviour: str) -> None:
        kind = behaviour.partition(":")[0]
        if kind not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")
        with self._lock:
            if kind == "opted_out":
                self.opted_out.add(number)
            else:
                self.opted_out.discard(number)
                self.behaviours[number] = behaviour

    def count(self, reference: str) -> int:
        with self._lock:
            return self.references[reference]

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    # -- WSGI: the inbox pages are outside the journal and the faults ----------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/inbox" or path.startswith("/inbox/"):
            return self._inbox(Request(environ))(environ, start_response)
        return super().wsgi(environ, start_response)

    # -- the API ---------------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        match = _MESSAGES.match(request.path)
        if match is None:
            return _error(20404, f"The requested resource {request.path} was not found", 404)
        auth = request.authorization
        if auth is None or auth.username != self.account_sid or auth.password != self.auth_token:
            return _error(20003, "Authenticate", 401)
        if match["account"] != self.account_sid:
            return _error(20404, f"The requested resource {request.path} was not found", 404)
        if self.response_delay:
            time.sleep(self.response_delay)
        if match["sid"]:
            if request.method != "GET":
                return _error(20004, "Method not allowed", 405)
            with self._lock:
                message = self.messages.get(match["sid"])
            if message is None:
                return _error(20404, f"The requested resource {request.path} was not found", 404)
            return json_response(self._public(message))
        if request.method == "GET":
            return self._list(request)
        if request.method != "POST":
            return _error(20004, "Method not allowed", 405)
        return self._create(request)

    def _public(self, message: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in message.items() if not k.startswith("_")}

    def _list(self, request: Request) -> Response:
        to, sender = request.args.get("To"), request.args.get("From")
        size = min(int(request.args.get("PageSize", 50)), 1000)
        with self._lock:
            found = [
                self._public(m)
                for m in reversed(list(self.messages.values()))  # newest first, as Twilio lists
                if (not to or m["to"] == to) and (not sender or m["from"] == sender)
            ][:size]
        uri = f"/{API}/Accounts/{self.account_sid}/Messages.json"
        return json_response(
            {
                "messages": found,
                "page": 0,
                "page_size": size,
                "start": 0,
                "end": max(len(found) - 1, 0),
                "uri": f"{uri}?PageSize={size}&Page=0",
                "first_page_uri": f"{uri}?PageSize={size}&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
            }
        )

    def _create(self, request: Request) -> Response:
        form = request.form
        to = form.get("To", "").strip()
        sender = form.get("From", "").strip()
        service = form.get("MessagingServiceSid", "").strip()
        body = form.get("Body", "")
        callback = form.get("StatusCallback") or self.status_callback_url
        if not to:
            return _error(21604, "A 'To' phone number is required.")
        if not sender and not service:
            return _error(21603, "A 'From' phone number is required.")
        if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
            return _error(21602, "Message body is required.")
        if not E164.match(to.removeprefix("whatsapp:")):
            return _error(21211, f"The 'To' number {to} is not a valid phone number.")
        if len(body) > 1600:
            return _error(21617, "The concatenated message body exceeds the 1600 character limit.")
        if callback and not re.match(r"^https?://[^/_]+(/|$)", callback):
            return _error(21609, f"The StatusCallback URL {callback} is not a valid URL.")
        with self._lock:
            behaviour = (
                "opted_out" if to in self.opted_out else self.behaviours.get(to) or MAGIC_NUMBERS.get(to)
            )
        behaviour = behaviour or "deliver"
        if behaviour in SYNC_ERRORS:
            code, text = SYNC_ERRORS[behaviour]
            return _error(code, text.format(to=to))

        sid = "SM" + uuid.uuid4().hex
        now = _now_rfc2822()
        reference = request.headers.get("X-Recoup-Reference") or _reference_from(callback)
        message: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": service or None,
            "from": sender or None,  # a Messaging Service picks the sender later: null until then, as on Twilio
            "to": to,
            "body": body,
            "status": "accepted" if service else "queued",
            "num_segments": str(sms_segments(body).segments),
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": API,
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/{API}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/{API}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "_reference": reference,
            "_status_callback": callback,
            "_created": time.time(),
        }
        with self._lock:
            self.messages[sid] = message
            if reference:
                self.references[reference] += 1
        self._keep({"kind": "message", "message": message})
        self._schedule(message, behaviour, callback)

        fault = self.take_fault(request.path, {"accept_then_timeout", "accept_then_500"})
        if fault is not None and fault.kind == "accept_then_timeout":
            time.sleep(fault.seconds)
        elif fault is not None:
            return Response("Internal Server Error", status=500)
        return json_response(self._public(message), 201)

    # -- status callbacks ------------------------------------------------------------------------------------
    def _schedule(self, message: dict[str, Any], behaviour: str, callback: str | None) -> None:
        kind, _, code = behaviour.partition(":")
        first, second = self.delays
        if kind == "silent":
            steps: list[tuple[float, str, str | None]] = []
        elif kind == "failed":
            steps = [(first, "failed", code or "30008")]
        elif kind == "undeliverable":
            steps = [(first, "sent", None), (first + second, "undelivered", code or "30003")]
        else:
            steps = [(first, "sent", None), (first + second, "delivered", None)]
        assert self._scheduler is not None
        for delay, status, error in steps:
            self._scheduler.at(delay, lambda s=status, e=error: self._advance(message["sid"], s, e, callback))

    def _advance(self, sid: str, status: str, error_code: str | None, callback: str | None) -> None:
        with self._lock:
            message = self.messages.get(sid)
            if message is None:  # reset in between
                return
            message["status"] = status
            message["from"] = message["from"] or self.from_number  # the service's sender, chosen by now
            message["date_updated"] = _now_rfc2822()
            if status == "sent":
                message["date_sent"] = message["date_updated"]
            if error_code:
                message["error_code"] = int(error_code)
                message["error_message"] = None
            fields = {k: message[k] for k in ("status", "date_updated", "date_sent", "error_code")}
        self._keep({"kind": "status", "sid": sid, "fields": fields})
        if not callback or not self.send_status_callbacks:
            return
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "From": message["from"],
            "To": message["to"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": API,
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code:
            params["ErrorCode"] = error_code
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        headers = {
            "X-Twilio-Signature": signature.sign(self.auth_token, callback, params),
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        outcome = post_webhook(self._session(), callback, data=params, headers=headers)
        outcome.update(kind="status", sid=sid, params=params)
        with self._lock:
            self.callbacks.append(outcome)

    # -- inbound ---------------------------------------------------------------------------------------------
    def send_inbound(
        self, sender: str, body: str, *, to: str | None = None, url: str | None = None
    ) -> dict[str, Any]:
        """A customer texts us: apply STOP/START as Twilio does, then POST the signed inbound webhook."""
        keyword = keywords.opt_out_type(body)
        with self._lock:
            if keyword == "STOP":
                self.opted_out.add(sender)
            elif keyword == "START":
                self.opted_out.discard(sender)
        sid = "SM" + uuid.uuid4().hex
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": sender,
            "To": to or self.from_number,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(sms_segments(body).segments),
            "SmsStatus": "received",
            "ApiVersion": API,
            "FromCountry": "US",
        }
        if keyword is not None:
            params["OptOutType"] = keyword
        record: dict[str, Any] = {
            "sid": sid,
            "from": sender,
            "to": params["To"],
            "body": body,
            "at": time.time(),
        }
        target = url or self.inbound_url
        if target:
            headers = {
                "X-Twilio-Signature": signature.sign(self.auth_token, target, params),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            record.update(post_webhook(self._session(), target, data=params, headers=headers))
        record["opted_out"] = sender in self.opted_out
        with self._lock:
            self.inbound.append(record)
        self._keep({"kind": "inbound", "record": record})
        return record

    # -- control ---------------------------------------------------------------------------------------------
    def control(self, request: Request) -> Response | None:
        action = request.path.removeprefix("/_control/").strip("/")
        if action == "numbers":
            if request.method == "POST":
                spec = request.get_json(force=True, silent=True) or {}
                try:
                    self.set_number(str(spec["number"]), str(spec.get("behaviour", "deliver")))
                except (KeyError, ValueError) as exc:
                    return json_response({"error": str(exc)}, 400)
            with self._lock:
                return json_response({"behaviours": self.behaviours, "opted_out": sorted(self.opted_out)})
        if action == "inbound" and request.method == "POST":
            spec = request.get_json(force=True, silent=True) or {}
            if "from" not in spec:
                return json_response({"error": "'from' is required"}, 400)
            return json_response(
                self.send_inbound(
                    str(spec["from"]), str(spec.get("body", "")), to=spec.get("to"), url=spec.get("url")
                )
            )
        if action == "messages":
            with self._lock:
                data = [dict(self._public(m), reference=m["_reference"]) for m in self.messages.values()]
            return json_response(data)
        if action == "references":
            with self._lock:
                return json_response(dict(self.references))
        if action == "callbacks":
            with self._lock:
                return json_response(list(self.callbacks))
        if action == "config" and request.method == "POST":
            spec = request.get_json(force=True, silent=True) or {}
            for key in ("status_callback_url", "inbound_url", "response_delay", "send_status_callbacks"):
                if key in spec:
                    setattr(self, key, spec[key])
            if "delays" in spec:
                self.delays = tuple(float(d) for d in spec["delays"])
            return json_response({"ok": True})
        return None

    # -- inbox -----------------------------------------------------------------------------------------------
    def _inbox(self, request: Request) -> Response:
        number = request.path.removeprefix("/inbox").strip("/")
        with self._lock:
            messages = [dict(m) for m in self.messages.values()]
            inbound = [dict(m) for m in self.inbound]
        if not number:
            counts = Counter(m["to"] for m in messages)
            rows = "".join(
                f"<tr><td><a href='/inbox/{quote(n)}'>{html.escape(n)}</a></td><td>{c}</td>"
                f"<td>{'opted out' if n in self.opted_out else ''}</td></tr>"
                for n, c in sorted(counts.items())
            )
            body = f"<table><tr><th>Phone</th><th>SMS received</th><th></th></tr>{rows}</table>"
            if not rows:
                body = "<p>No SMS sent yet.</p>"
            return Response(page("SMS inbox", body), mimetype="text/html")
        thread = [(m["_created"], "out", m) for m in messages if m["to"] == number]
        thread += [(m["at"], "in", m) for m in inbound if m["from"] == number]
        bubbles = []
        for at, direction, m in sorted(thread, key=lambda t: t[0]):
            when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if direction == "in":
                bubbles.append(f"<div class='bubble in'>{linkify(m['body'])}<div class='meta'>{when}</div></div>")
                continue
            bad = m["status"] in ("failed", "undelivered")
            badge = f"<span class='badge{' bad' if bad else ''}'>{html.escape(m['status'])}</span>"
            bubbles.append(
                f"<div class='bubble'>{linkify(m['body'])}<div class='meta'>{when} &middot; "
                f"{m['num_segments']} segment(s) &middot; {badge}</div></div>"
            )
        shown = "".join(bubbles) or "<p>Nothing yet.</p>"
        content = f"<div class='phone'><h2>{html.escape(number)}</h2>{shown}</div>"
        return Response(page(f"SMS to {number}", content, back="/inbox"), mimetype="text/html")


def _reference_from(callback: str | None) -> str | None:
    if not callback:
        return None
    match = re.search(r"[?&]ref=([^&]+)", callback)
    if not match:
        return None
    return unquote(match.group(1))
