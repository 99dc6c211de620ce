"""A WhatsApp Cloud API simulator: messages, signed webhooks (statuses, inbound), message-template management.

Wire format as Meta's Graph API: ``POST /{version}/{phone-number-id}/messages`` with ``Authorization: Bearer``
-> ``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}``; errors in the
Graph envelope ``{"error": {"message", "type", "code", "error_data", "fbtrace_id"}}``. Status webhooks
(sent / delivered / read, or failed with ``errors``) are POSTed to ``webhook_url`` with
``X-Hub-Signature-256``, after small delays and, for a share ``out_of_order`` of messages, in shuffled order,
as Meta does.

Every WhatsApp user has a business-scoped user id (BSUID, ``US.1349...``: country, a dot, digits; stable per
number, see :meth:`WhatsAppSimulator.user_id_for`), which webhooks carry as Meta's do now: ``contacts[].user_id``
on statuses and inbound messages, ``statuses[].recipient_user_id`` and ``messages[].from_user_id``. A user who
adopted a username may have the phone number withheld (``withhold_phone`` on an inbound message): then
``contacts[].wa_id`` and ``messages[].from`` are left out and only the user id says who wrote. Template status
updates carry ``entry[].time``.

As on the real service, a free-form text outside the 24-hour window and a number that is not on WhatsApp are
accepted (200) and then fail by webhook (131047, 131026). A number can also be set to answer synchronously
with any Graph error (``reject:131026``, ``reject:131056``, ``reject:130429`` ...).

Control routes (besides the harness's ``requests``, ``reset``, ``faults``):

    GET/POST /_control/numbers        {"number": "15551234567", "behaviour": "deliver|read|not_on_whatsapp|
                                       reject:CODE|silent"}
    POST /_control/inbound            {"from": "15551234567", "text": "STOP", "name"?: "Ana",
                                       "withhold_phone"?: true}: the customer writes (opens the 24-hour
                                       window) and a signed webhook is POSTed
    POST /_control/window             {"number": ..., "last_inbound_at": UNIX_SECONDS | null}
    GET  /_control/templates          every template; POST adds one directly:
                                       {"name", "language", "body", "category"?, "status"?: "APPROVED"}
    POST /_control/templates/<id>     {"status": "APPROVED|REJECTED|PAUSED|DISABLED", "reason"?}: review
                                       outcome, sent as a message_template_status_update webhook
    GET  /_control/messages | /_control/references | /_control/callbacks
    POST /_control/config             {"webhook_url", "delays", "out_of_order", "response_delay"}

``GET /inbox`` and ``GET /inbox/<number>`` show each customer's chat as a phone would (links open in a new tab). With
``inbox_file=PATH`` (the demo) messages, statuses and inbound texts are also kept in that file and read back on
start, so the inbox outlives a restart.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from werkzeug.wrappers import Request, Response

from sandbox.common import InboxFile, WebhookScheduler, linkify, page, post_webhook
from sandbox.harness import SimulatorServer, json_response
from sandbox.whatsapp import signature

DEFAULT_TOKEN = "sandbox-whatsapp-token"
DEFAULT_APP_SECRET = "sandbox-whatsapp-app-secret"
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_WABA_ID = "102290129340398"
DEFAULT_DISPLAY_NUMBER = "15550001111"
WINDOW_SECONDS = 24 * 3600

ERROR_TITLES = {
    100: "Invalid parameter",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is paused",
    132016: "Template is disabled",
    190: "Invalid OAuth access token - Cannot parse access token",
}
BEHAVIOURS = {"deliver", "read", "not_on_whatsapp", "reject", "silent"}
TEMPLATE_STATUSES = {"APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL"}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def graph_error(
    code: int, status: int = 400, details: str | None = None, message: str | None = None
) -> Response:
    title = message or ERROR_TITLES.get(code, "Error")
    error: dict[str, Any] = {
        "message": f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": base64.b64encode(uuid.uuid4().bytes[:9]).decode(),
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return json_response({"error": error}, status)


def _digits(number: str) -> str:
    return re.sub(r"\D", "", number)


def _wamid() -> str:
    return "wamid." + base64.b64encode(b"HBgL" + uuid.uuid4().bytes + uuid.uuid4().bytes[:4]).decode().rstrip(
        "="
    )


#: ISO 3166 country of a number's calling code, for the BSUID's prefix (the simulator's few; others are "US")
_COUNTRY_BY_PREFIX = {"1": "US", "7": "RU", "33": "FR", "34": "ES", "39": "IT", "44": "GB", "49": "DE", "52": "MX",
                      "54": "AR", "55": "BR", "57": "CO", "91": "IN"}


def _country(number: str) -> str:
    for length in (2, 1):
        if number[:length] in _COUNTRY_BY_PREFIX:
            return _COUNTRY_BY_PREFIX[number[:length]]
    return "US"


def _body_text(components: list[dict[str, Any]], kind: str = "BODY") -> str:
    for component in components:
        if str(component.get("type", "")).upper() == kind:
            return str(component.get("text", ""))
    return ""


class WhatsAppSimulator(SimulatorServer):
    name = "whatsapp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = DEFAULT_TOKEN,
        app_secret: str = DEFAULT_APP_SECRET,
        webhook_url: str | None = None,
        phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
        waba_id: str = DEFAULT_WABA_ID,
        display_phone_number: str = DEFAULT_DISPLAY_NUMBER,
        delays: tuple[float, float, float] = (0.05, 0.1, 0.2),
        out_of_order: float = 0.3,
        seed: int | None = None,
        response_delay: float = 0.0,
        templates: list[dict[str, Any]] | None = None,
        template_review_seconds: float | None = None,
        numbers: dict[str, str] | None = None,
        callback_workers: int = 4,
        inbox_file: str | None = None,
    ) -> None:
        super().__init__(host, port)
        self.token = token
        self.app_secret = app_secret
        self.webhook_url = webhook_url
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.display_phone_number = display_phone_number
        self.delays = tuple(delays)
        self.out_of_order = out_of_order
        self.response_delay = response_delay
        self.template_review_seconds = template_review_seconds
        self._rng = random.Random(seed)
        self.behaviours: dict[str, str] = {_digits(k): v for k, v in (numbers or {}).items()}
        self.last_inbound: dict[str, float] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.references: Counter[str] = Counter()
        self.callbacks: list[dict[str, Any]] = []
        self.inbound: list[dict[str, Any]] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self._initial_templates = list(templates or [])
        for spec in self._initial_templates:
            self.add_template(**spec)
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
        """What an earlier run kept (``inbox_file``): messages with their last status, and inbound texts (which
        also reopen each customer's 24-hour window)."""
        for event in events:
            kind = event.get("kind")
            if kind == "message":
                message = dict(event["message"])
                self.messages[message["id"]] = message
                if message.get("reference"):
                    self.references[message["reference"]] += 1
            elif kind == "status" and event.get("id") in self.messages:
                self.messages[event["id"]]["status"] = event["status"]
            elif kind == "inbound":
                record = dict(event["record"])
                self.inbound.append(record)
                self.last_inbound[record["from"]] = max(self.last_inbound.get(record["from"], 0), record["at"])

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> WhatsAppSimulator:
        self._scheduler = WebhookScheduler(self._workers, name="whatsapp-webhooks")
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
            for store in (self.behaviours, self.last_inbound, self.messages, self.references, self.templates):
                store.clear()
            self.callbacks.clear()
            self.inbound.clear()
        for spec in self._initial_templates:
            self.add_template(**spec)
        if self.inbox_file is not None:
            self.inbox_file.clear()

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self._scheduler.wait_idle(timeout) if self._scheduler else True

    def count(self, reference: str) -> int:
        with self._lock:
            return self.references[reference]

    def user_id_for(self, number: str) -> str:
        """The number's business-scoped user id in this business portfolio: always the same for one number (Meta
        makes a new one only when the user changes number)."""
        digits = _digits(number)
        seed = hashlib.sha256(f"{self.waba_id}:{digits}".encode()).digest()
        return f"{_country(digits)}.{int.from_bytes(seed[:8], 'big') % 10**19:019d}"

    def set_number(self, number: str, behaviour: str) -> None:
        if behaviour.partition(":")[0] not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")
        with self._lock:
            self.behaviours[_digits(number)] = behaviour

    def add_template(
        self,
        name: str,
        language: str = "en_US",
        body: str = "",
        category: str = "UTILITY",
        status: str = "APPROVED",
        components: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Register a template directly (as if created and reviewed earlier)."""
        template = {
            "id": str(random.randint(10**15, 10**16 - 1)),
            "name": name,
            "language": language,
            "category": category.upper(),
            "status": status.upper(),
            "components": components or [{"type": "BODY", "text": body}],
            "rejected_reason": "NONE",
        }
        with self._lock:
            self.templates[template["id"]] = template
        return template

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    # -- WSGI: inbox pages bypass the journal and the faults -------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/inbox" or path.startswith("/inbox/"):
            return self._inbox(Request(environ))(environ, start_response)
        return super().wsgi(environ, start_response)

    # -- the Graph API ---------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {self.token}":
            return graph_error(190, 401)
        parts = request.path.strip("/").split("/")
        if not parts or not re.fullmatch(r"v\d+\.\d+", parts[0]):
            return graph_error(100, 400, message="Unknown path components: " + request.path)
        if self.response_delay:
            time.sleep(self.response_delay)
        rest = parts[1:]
        if len(rest) == 2 and rest[1] == "messages" and request.method == "POST":
            if rest[0] != self.phone_number_id:
                return self._unsupported(request.method, rest[0])
            return self._send(request)
        if len(rest) == 2 and rest[1] == "message_templates":
            if rest[0] != self.waba_id:
                return self._unsupported(request.method, rest[0])
            if request.method == "POST":
                return self._create_template(request)
            return self._list_templates(request)
        if len(rest) == 1 and request.method == "GET":
            with self._lock:
                template = self.templates.get(rest[0])
            if template is None:
                return self._unsupported("get", rest[0])
            return json_response(template)
        return self._unsupported(request.method, "/".join(rest))

    def _unsupported(self, method: str, object_id: str) -> Response:
        return graph_error(
            100,
            400,
            message=f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
            "cannot be "
            "loaded due to missing permissions, or does not support this operation",
        )

    def _find_template(self, name: str, language: str) -> dict[str, Any] | None:
        with self._lock:
            for template in self.templates.values():
                if template["name"] == name and template["language"] == language:
                    return template
        return None

    def _send(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return graph_error(100, details="the body is not valid JSON")
        if not isinstance(body, dict):
            return graph_error(100, details="the body must be a JSON object")
        if body.get("messaging_product") != "whatsapp":
            return graph_error(100, message="The parameter messaging_product is required.")
        to = _digits(str(body.get("to") or ""))
        if not to:
            return graph_error(100, message="The parameter to is required.")
        kind = body.get("type", "text")
        rendered, template_name = "", None
        if kind == "template":
            spec = body.get("template") or {}
            template_name = spec.get("name")
            language = (spec.get("language") or {}).get("code", "")
            template = self._find_template(str(template_name), language)
            if template is None or template["status"] in ("PENDING", "REJECTED", "IN_APPEAL"):
                return graph_error(
                    132001,
                    details=f"template name ({template_name}) does not exist in {language or '-'}",
                )
            if template["status"] == "PAUSED":
                return graph_error(132015, details=f"template {template_name} is paused")
            if template["status"] == "DISABLED":
                return graph_error(132016, details=f"template {template_name} is disabled")
            problem, rendered = self._check_parameters(template, spec.get("components") or [])
            if problem:
                return graph_error(132000, details=problem)
        elif kind == "text":
            rendered = str((body.get("text") or {}).get("body") or "")
            if not rendered:
                return graph_error(100, message="The parameter text['body'] is required.")
        else:
            return graph_error(131051 if kind else 100, message=f"Unsupported message type {kind!r}")
        with self._lock:
            behaviour = self.behaviours.get(to, "deliver")
            last_inbound = self.last_inbound.get(to)
        kind_of, _, code = behaviour.partition(":")
        if kind_of == "reject":
            number = int(code or 131026)
            return graph_error(number, 429 if number in (130429, 131056, 80007) else 400)

        wamid = _wamid()
        reference = body.get("biz_opaque_callback_data")
        message = {
            "id": wamid,
            "to": to,
            "type": kind,
            "template": template_name,
            "text": rendered,
            "reference": reference,
            "status": "accepted",
            "created": time.time(),
        }
        with self._lock:
            self.messages[wamid] = message
            if reference:
                self.references[reference] += 1
        self._keep({"kind": "message", "message": message})
        failure = None
        if kind_of == "not_on_whatsapp":
            failure = 131026
        elif kind == "text" and (last_inbound is None or time.time() - last_inbound >= WINDOW_SECONDS):
            failure = 131047
        self._schedule(message, failure, kind_of)
        return json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": str(body.get("to")), "wa_id": to}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def _check_parameters(
        self, template: dict[str, Any], components: list[dict[str, Any]]
    ) -> tuple[str | None, str]:
        """Parameter counts against the template's placeholders, and the text the customer would read."""
        given: dict[str, list[dict[str, Any]]] = {}
        for component in components:
            given.setdefault(str(component.get("type", "")).upper(), []).extend(
                component.get("parameters") or []
            )
        rendered = ""
        for kind in ("HEADER", "BODY"):
            text = _body_text(template["components"], kind)
            wanted = list(dict.fromkeys(_PLACEHOLDER.findall(text)))
            params = given.get(kind, [])
            if len(params) != len(wanted):
                return (
                    f"{kind.lower()}: expected number of params ({len(wanted)}) "
                    f"does not match the received ({len(params)})",
                    "",
                )
            values = {}
            for index, (placeholder, param) in enumerate(zip(wanted, params, strict=True)):
                key = param.get("parameter_name") or (
                    placeholder if not placeholder.isdigit() else str(index + 1)
                )
                values[key] = _parameter_text(param)
            filled = _PLACEHOLDER.sub(lambda m, v=values: v.get(m.group(1), m.group(0)), text)
            if filled:
                rendered += f"*{filled}*\n" if kind == "HEADER" else filled
        return None, rendered

    # -- webhooks --------------------------------------------------------------------------------------------
    def _schedule(self, message: dict[str, Any], failure: int | None, behaviour: str) -> None:
        if behaviour == "silent":
            return
        if failure is not None:
            steps: list[tuple[str, int | None]] = [("failed", failure)]
        elif behaviour == "read":
            steps = [("sent", None), ("delivered", None), ("read", None)]
        else:
            steps = [("sent", None), ("delivered", None)]
        delays = list(self.delays[: len(steps)])
        with self._lock:
            if len(steps) > 1 and self._rng.random() < self.out_of_order:
                self._rng.shuffle(delays)
        assert self._scheduler is not None
        for (status, code), delay in zip(steps, delays, strict=True):
            self._scheduler.at(delay, lambda s=status, c=code: self._post_status(message, s, c))

    def _envelope(self, field: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"field": field, "value": value}]}],
        }

    def _deliver(self, payload: dict[str, Any], kind: str, url: str | None = None) -> dict[str, Any] | None:
        target = url or self.webhook_url
        if not target:
            return None
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature.sign(self.app_secret, body),
            "User-Agent": "facebookexternalua",
        }
        outcome = post_webhook(self._session(), target, body=body, headers=headers)
        outcome.update(kind=kind, payload=payload)
        with self._lock:
            self.callbacks.append(outcome)
        return outcome

    def _post_status(self, message: dict[str, Any], status: str, code: int | None) -> None:
        with self._lock:
            if message["id"] not in self.messages:
                return
            order = {"accepted": 0, "sent": 1, "failed": 2, "delivered": 3, "read": 4}
            if order[status] > order.get(message["status"], 0):
                message["status"] = status
                self._keep({"kind": "status", "id": message["id"], "status": status})
        on_whatsapp = code != 131026  # a number not on WhatsApp has no user, so no user id
        user_id = self.user_id_for(message["to"]) if on_whatsapp else None
        entry: dict[str, Any] = {
            "id": message["id"],
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": message["to"],
        }
        if user_id:
            entry["recipient_user_id"] = user_id
        if message.get("reference"):
            entry["biz_opaque_callback_data"] = message["reference"]
        if code is not None:
            title = ERROR_TITLES.get(code, "Error")
            entry["errors"] = [
                {"code": code, "title": title, "message": title, "error_data": {"details": title + "."}}
            ]
        else:
            category = "service" if message["type"] == "text" else "utility"
            entry["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": category}}
            entry["pricing"] = {
                "billable": category != "service",
                "pricing_model": "PMP",
                "category": category,
            }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.display_phone_number,
                "phone_number_id": self.phone_number_id,
            },
            "contacts": [{"wa_id": message["to"], **({"user_id": user_id} if user_id else {})}],
            "statuses": [entry],
        }
        self._deliver(self._envelope("messages", value), "status")

    def send_inbound(
        self, sender: str, text: str, *, name: str = "Customer", url: str | None = None,
        withhold_phone: bool = False,
    ) -> dict[str, Any]:
        """The customer writes to us: opens the 24-hour window and POSTs the signed webhook. ``withhold_phone``:
        the user adopted a username and Meta leaves the number out (``wa_id``, ``from``); the user id remains."""
        number = _digits(sender)
        user_id = self.user_id_for(number)
        now = time.time()
        wamid = _wamid()
        with self._lock:
            self.last_inbound[number] = now
            record: dict[str, Any] = {"id": wamid, "from": number, "user_id": user_id, "text": text, "at": now}
            self.inbound.append(record)
        self._keep({"kind": "inbound", "record": record})
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.display_phone_number,
                "phone_number_id": self.phone_number_id,
            },
            "contacts": [{"profile": {"name": name}, "wa_id": number, "user_id": user_id}],
            "messages": [
                {
                    "from": number,
                    "from_user_id": user_id,
                    "id": wamid,
                    "timestamp": str(int(now)),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        if withhold_phone:
            del value["contacts"][0]["wa_id"], value["messages"][0]["from"]
        outcome = self._deliver(self._envelope("messages", value), "inbound", url)
        return {**record, **(outcome or {})}

    # -- templates -------------------------------------------------------------------------------------------
    def _create_template(self, request: Request) -> Response:
        spec = request.get_json(force=True, silent=True)
        if not isinstance(spec, dict):
            return graph_error(100, details="the body must be a JSON object")
        name, language = str(spec.get("name") or ""), str(spec.get("language") or "")
        category = str(spec.get("category") or "").upper()
        components = spec.get("components")
        if not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            return graph_error(100, details="name: use lowercase letters, digits and underscores")
        if not language:
            return graph_error(100, details="language is required")
        if category not in ("UTILITY", "MARKETING", "AUTHENTICATION"):
            return graph_error(100, details="category must be UTILITY, MARKETING or AUTHENTICATION")
        if not isinstance(components, list) or not _body_text(components):
            return graph_error(100, details="components must include a BODY with text")
        for component in components:
            if _PLACEHOLDER.search(str(component.get("text", ""))) and not component.get("example"):
                return graph_error(
                    100, details=f"{component.get('type')}: variables need an example (example.body_text)"
                )
        if self._find_template(name, language) is not None:
            return graph_error(100, details=f"Message template {name!r} already exists in {language}")
        template = self.add_template(
            name, language, category=category, status="PENDING", components=components
        )
        if self.template_review_seconds is not None and self._scheduler is not None:
            self._scheduler.at(
                self.template_review_seconds, lambda: self.review_template(template["id"], "APPROVED")
            )
        return json_response({"id": template["id"], "status": "PENDING", "category": category})

    def _list_templates(self, request: Request) -> Response:
        name = request.args.get("name")
        with self._lock:
            data = [dict(t) for t in self.templates.values() if not name or t["name"] == name]
        return json_response({"data": data, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}})

    def review_template(self, template_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
        """Meta's review outcome: the status changes and a message_template_status_update webhook goes out."""
        status = status.upper()
        if status not in TEMPLATE_STATUSES:
            raise ValueError(f"unknown template status {status!r}")
        with self._lock:
            template = self.templates[template_id]
            template["status"] = status
            template["rejected_reason"] = reason or ("NONE" if status != "REJECTED" else "INVALID_FORMAT")
        value = {
            "event": status,
            "message_template_id": int(template_id),
            "message_template_name": template["name"],
            "message_template_language": template["language"],
            "message_template_category": template["category"],
            "reason": reason if status != "APPROVED" else None,
        }
        payload = self._envelope("message_template_status_update", value)
        payload["entry"][0]["time"] = int(time.time())  # template updates say when, on the entry
        self._deliver(payload, "template")
        return dict(template)

    # -- control ---------------------------------------------------------------------------------------------
    def control(self, request: Request) -> Response | None:
        action = request.path.removeprefix("/_control/").strip("/")
        spec = request.get_json(force=True, silent=True) if request.method == "POST" else None
        spec = spec if isinstance(spec, dict) else {}
        if action == "numbers":
            if request.method == "POST":
                try:
                    self.set_number(str(spec["number"]), str(spec.get("behaviour", "deliver")))
                except (KeyError, ValueError) as exc:
                    return json_response({"error": str(exc)}, 400)
            with self._lock:
                return json_response(dict(self.behaviours))
        if action == "inbound" and request.method == "POST":
            if "from" not in spec:
                return json_response({"error": "'from' is required"}, 400)
            return json_response(
                self.send_inbound(
                    str(spec["from"]), str(spec.get("text", "")), name=spec.get("name", "Customer"),
                    withhold_phone=bool(spec.get("withhold_phone")),
                )
            )
        if action == "window" and request.method == "POST":
            number = _digits(str(spec.get("number", "")))
            with self._lock:
                if spec.get("last_inbound_at") is None:
                    self.last_inbound.pop(number, None)
                else:
                    self.last_inbound[number] = float(spec["last_inbound_at"])
            return json_response({"ok": True})
        if action == "templates":
            if request.method == "POST":
                try:
                    return json_response(self.add_template(**spec), 201)
                except TypeError as exc:
                    return json_response({"error": str(exc)}, 400)
            with self._lock:
                return json_response(list(self.templates.values()))
        if action.startswith("templates/") and request.method == "POST":
            try:
                return json_response(
                    self.review_template(
                        action.split("/", 1)[1], str(spec.get("status", "")), spec.get("reason")
                    )
                )
            except (KeyError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)
        if action == "messages":
            with self._lock:
                return json_response(list(self.messages.values()))
        if action == "references":
            with self._lock:
                return json_response(dict(self.references))
        if action == "callbacks":
            with self._lock:
                return json_response(list(self.callbacks))
        if action == "config" and request.method == "POST":
            for key in ("webhook_url", "out_of_order", "response_delay", "template_review_seconds"):
                if key in spec:
                    setattr(self, key, spec[key])
            if "delays" in spec:
                self.delays = tuple(float(d) for d in spec["delays"])
            return json_response({"ok": True})
        return None

    # -- inbox -----------------------------------------------------------------------------------------------
    def _inbox(self, request: Request) -> Response:
        number = _digits(request.path.removeprefix("/inbox"))
        with self._lock:
            messages = [dict(m) for m in self.messages.values()]
            inbound = [dict(m) for m in self.inbound]
        if not number:
            counts = Counter(m["to"] for m in messages)
            rows = "".join(
                f"<tr><td><a href='/inbox/{quote(n)}'>+{html.escape(n)}</a></td><td>{c}</td></tr>"
                for n, c in sorted(counts.items())
            )
            body = (
                f"<table><tr><th>WhatsApp</th><th>Messages</th></tr>{rows}</table>"
                if rows
                else "<p>Nothing yet.</p>"
            )
            return Response(page("WhatsApp inbox", body), mimetype="text/html")
        thread = [(m["created"], "out", m) for m in messages if m["to"] == number]
        thread += [(m["at"], "in", m) for m in inbound if m["from"] == number]
        bubbles = []
        ticks = {"sent": "&#10003;", "delivered": "&#10003;&#10003;", "read": "<b>&#10003;&#10003;</b>"}
        for at, direction, m in sorted(thread, key=lambda t: t[0]):
            when = datetime.fromtimestamp(at, UTC).strftime("%H:%M UTC")
            if direction == "in":
                bubbles.append(f"<div class='bubble in'>{linkify(m['text'])}<div class='meta'>{when}</div></div>")
                continue
            state = ticks.get(m["status"], html.escape(m["status"]))
            if m["status"] == "failed":
                state = "<span class='badge bad'>failed</span>"
            label = f"template {html.escape(m['template'])} &middot; " if m["template"] else ""
            bubbles.append(
                f"<div class='bubble'>{linkify(m['text'])}"
                f"<div class='meta'>{label}{when} {state}</div></div>"
            )
        content = (
            f"<div class='phone wa'><h2>+{html.escape(number)}</h2>"
            f"{''.join(bubbles) or '<p>Nothing yet.</p>'}</div>"
        )
        return Response(page(f"WhatsApp +{number}", content, back="/inbox"), mimetype="text/html")


def _parameter_text(param: dict[str, Any]) -> str:
    kind = param.get("type")
    if kind == "currency":
        return str((param.get("currency") or {}).get("fallback_value", ""))
    if kind == "date_time":
        return str((param.get("date_time") or {}).get("fallback_value", ""))
    return str(param.get("text", param.get("payload", "")))
