"""An SMTP simulator (aiosmtpd) that keeps every message parsed, with an HTTP control API and a mail inbox.

``SmtpSimulator(host, port=0, username=..., password=...)`` listens for SMTP on ``.port`` (``.url`` is an
``SMTP_URL`` for it) and serves HTTP on ``.control_port`` (``.control_url``):

    GET  /_control/messages[?to=ADDR]   every message received, parsed (headers, text, html, reference)
    GET  /_control/references           {"<X-Recoup-Reference>": count}
    POST /_control/unsubscribe          {"index": N} or {"message_id": "<...>"}: do what Gmail does for RFC
    8058
                                         one-click: POST "List-Unsubscribe=One-Click" to the List-Unsubscribe
                                         URL
    POST /_control/reset                forget messages, faults and the journal
    POST /_control/config               {"response_delay": SECONDS}: how long the server takes to answer the end of
                                         DATA (it has the message from the moment it read the final dot)
    POST /_control/faults               {"kind": KIND, "path": "ana@example.com", "count": 1}; KIND is one of
                                         mail_421, mail_451, mail_550 (at MAIL FROM), rcpt_450, rcpt_451,
                                         rcpt_550 (at RCPT TO, per recipient when "path" is set), data_421,
                                         data_451, data_550 (after the content), drop_before_data (hang up
                                         without storing), drop_after_data (store, then hang up before
                                         answering: the client cannot know it was delivered)
    GET  /inbox, /inbox/<address>       what each recipient received, as a mail client shows it

With ``inbox_file=PATH`` (the demo) every message is also appended to that file and read back on start, so the
inbox outlives a restart as the admin's records do; ``reset`` empties it.

AUTH (PLAIN/LOGIN) is offered when credentials are given and required unless ``require_auth=False``; it is
allowed without TLS because this is a loopback sandbox.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import re
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, unquote

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from werkzeug.wrappers import Request, Response

from sandbox.common import InboxFile, email_frame, link_list, linkify, links_in, page
from sandbox.harness import SimulatorServer, json_response

REFERENCE_HEADER = "X-Recoup-Reference"
SMTP_FAULTS = {
    "mail_421": "421 4.3.2 Service not available, closing transmission channel",
    "mail_451": "451 4.3.0 Temporary server error, try again later",
    "mail_550": "550 5.7.1 Sender rejected",
    "rcpt_450": "450 4.2.1 Mailbox temporarily unavailable",
    "rcpt_451": "451 4.7.1 Greylisted, try again later",
    "rcpt_550": "550 5.1.1 Recipient address rejected: User unknown",
    "data_421": "421 4.3.2 Service shutting down",
    "data_451": "451 4.3.0 Local error in processing",
    "data_550": "550 5.7.1 Message rejected as spam",
}
DROP_FAULTS = {"drop_before_data", "drop_after_data"}

logging.getLogger("mail.log").setLevel(logging.ERROR)  # it logs "AUTH without TLS" on every connection


class _FreePortController(Controller):
    """aiosmtpd's Controller, able to bind port 0 and report the port it got."""

    def _create_server(self) -> Any:
        create = super()._create_server()

        async def bind() -> Any:
            server = await create
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()

    def factory(self) -> SMTP:
        # AUTH without TLS is deliberate on this loopback sandbox; aiosmtpd warns on every connection
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return super().factory()


def _header(raw: bytes, name: str) -> str | None:
    """One header's value from the raw message's header block (unfolded), without parsing the MIME."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^" + re.escape(name.encode()) + rb":[ \t]*(.*(?:\r?\n[ \t].*)*)", head, re.I | re.M)
    return re.sub(r"\r?\n[ \t]+", " ", match.group(1).decode("utf-8", "replace")).strip() if match else None


class ReceivedMail(dict):  # type: ignore[type-arg]
    """A received message: the envelope and our reference header at once; headers and bodies parsed from the raw
    message the first time anything else is read (parsing MIME costs more than the whole SMTP conversation, and
    a load test reads back almost none of what it sent)."""

    PARSED = ("from", "to", "subject", "message_id", "date", "list_unsubscribe", "list_unsubscribe_post",
              "headers", "text", "html", "parsed")

    def __missing__(self, key: str) -> Any:
        if key not in self.PARSED:
            raise KeyError(key)
        self.parse()
        return dict.__getitem__(self, key)

    def parse(self) -> ReceivedMail:
        if dict.__contains__(self, "parsed"):
            return self
        raw = getattr(self, "raw_bytes", None) or dict.__getitem__(self, "raw").encode()
        parsed = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        text_part = parsed.get_body(("plain",))
        html_part = parsed.get_body(("html",))
        raw_text = dict.pop(self, "raw")  # put back last, as it always was: readers search the decoded text first
        self.update(
            {
                "from": str(parsed.get("From", "")),
                "to": str(parsed.get("To", "")),
                "subject": str(parsed.get("Subject", "")),
                "message_id": str(parsed.get("Message-ID", "")),
                "date": str(parsed.get("Date", "")),
                "list_unsubscribe": parsed.get("List-Unsubscribe"),
                "list_unsubscribe_post": parsed.get("List-Unsubscribe-Post"),
                "headers": [[k, str(v)] for k, v in parsed.items()],
                "text": text_part.get_content() if text_part is not None else None,
                "html": html_part.get_content() if html_part is not None else None,
                "parsed": parsed,
                "raw": raw_text,
            }
        )
        return self

    def __repr__(self) -> str:
        return dict.__repr__(self.parse())

    __str__ = __repr__

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.PARSED or dict.__contains__(self, key)

    def __iter__(self) -> Any:
        return dict.__iter__(self.parse())

    def keys(self) -> Any:
        return dict.keys(self.parse())

    def items(self) -> Any:
        return dict.items(self.parse())

    def values(self) -> Any:
        return dict.values(self.parse())


#: what a received message is made of (the rest is parsed from ``raw`` when asked)
_STORED = ("index", "queue_id", "received_at", "mail_from", "rcpt_tos", "authenticated", "reference", "raw")


class _Handler:
    def __init__(self, simulator: SmtpSimulator) -> None:
        self.sim = simulator

    def _fault(self, stage: str, addresses: list[str]) -> str | None:
        kinds = {k for k in SMTP_FAULTS if k.startswith(stage + "_")}
        if stage == "data":
            kinds |= DROP_FAULTS
        for address in addresses or [""]:
            fault = self.sim.control.take_fault(address, kinds)
            if fault is not None:
                return fault.kind
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        fault = self._fault("mail", [address])
        if fault:
            return SMTP_FAULTS[fault]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self._fault("rcpt", [address])
        if fault:
            return SMTP_FAULTS[fault].replace("Recipient", f"<{address}>: Recipient")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sim.response_delay:  # the server's end-of-data processing (queueing, scanning)
            await asyncio.sleep(self.sim.response_delay)
        fault = self._fault("data", list(envelope.rcpt_tos))
        if fault in SMTP_FAULTS:
            return SMTP_FAULTS[str(fault)]
        if fault == "drop_before_data":
            server.transport.close()
            return "421 closing"
        stored = self.sim._store(envelope, session)
        if fault == "drop_after_data":
            server.transport.close()
            return "421 closing"
        return f"250 2.0.0 Ok: queued as {stored['queue_id']}"


class _SmtpControl(SimulatorServer):
    name = "smtp-control"

    def __init__(self, simulator: SmtpSimulator, host: str, port: int) -> None:
        super().__init__(host, port)
        self.sim = simulator

    def reset(self) -> None:
        super().reset()
        self.sim._clear()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/inbox" or path.startswith("/inbox/"):
            return self.sim._inbox(Request(environ))(environ, start_response)
        return super().wsgi(environ, start_response)

    def handle(self, request: Request) -> Response:
        return Response("the SMTP simulator's HTTP side serves /_control/ and /inbox", status=404)

    def control(self, request: Request) -> Response | None:
        action = request.path.removeprefix("/_control/").strip("/")
        if action == "messages":
            to = request.args.get("to")
            return json_response([_public(m) for m in self.sim.received(to)])
        if action == "references":
            with self.sim._lock:
                return json_response(dict(self.sim.references))
        if action == "config" and request.method == "POST":
            spec = request.get_json(force=True, silent=True) or {}
            if "response_delay" in spec:
                self.sim.response_delay = float(spec["response_delay"])
            return json_response({"ok": True})
        if action == "unsubscribe" and request.method == "POST":
            spec = request.get_json(force=True, silent=True) or {}
            try:
                return json_response(self.sim.one_click_unsubscribe(**spec))
            except (TypeError, LookupError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)
        return None


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "parsed"}


class SmtpSimulator:
    name = "smtp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        require_auth: bool | None = None,
        control_port: int = 0,
        server_hostname: str = "sandbox-smtp.local",
        response_delay: float = 0.0,
        inbox_file: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.require_auth = bool(username) if require_auth is None else require_auth
        self.server_hostname = server_hostname
        self.response_delay = response_delay  # seconds before the answer to the end of DATA
        self.control = _SmtpControl(self, host, control_port)
        self._lock = self.control._lock
        self.messages: list[dict[str, Any]] = []
        self.references: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._controller: _FreePortController | None = None
        self.inbox_file = InboxFile(inbox_file) if inbox_file else None
        if self.inbox_file is not None:
            self._reload(self.inbox_file.load())

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> SmtpSimulator:
        options: dict[str, Any] = {"auth_require_tls": False, "auth_required": self.require_auth}
        if self.username is not None:
            options["authenticator"] = self._authenticate
        self._controller = _FreePortController(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname=self.server_hostname,
            **options,
        )
        self._controller.start()
        self.port = self._controller.port
        self.control.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self.control.stop()

    def __enter__(self) -> SmtpSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """An ``SMTP_URL`` that reaches this simulator (with the credentials when it has some)."""
        if self.username is not None:
            credentials = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        else:
            credentials = ""
        return f"smtp://{credentials}{self.host}:{self.port}"

    @property
    def control_port(self) -> int:
        return self.control.port

    @property
    def control_url(self) -> str:
        return self.control.url

    # -- faults (through the control server's fault list) ----------------------------------------------------
    def inject(self, kind: str, **options: Any) -> Any:
        if kind not in SMTP_FAULTS and kind not in DROP_FAULTS:
            raise ValueError(f"unknown SMTP fault {kind!r}")
        return self.control.inject(kind, **options)

    def reset(self) -> None:
        self.control.reset()

    def _clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.references.clear()
        if self.inbox_file is not None:
            self.inbox_file.clear()

    def _reload(self, events: list[dict[str, Any]]) -> None:
        """Messages kept by an earlier run (``inbox_file``), in the order they arrived."""
        last = 0
        for event in events:
            if event.get("kind") != "mail":
                continue
            fields = {k: v for k, v in event.items() if k != "kind"}
            record = ReceivedMail(**fields)
            record.raw_bytes = str(fields.get("raw", "")).encode()
            self.messages.append(record)
            if record["reference"]:
                self.references[str(record["reference"])] += 1
            last = max(last, int(fields.get("index") or 0))
        self._ids = itertools.count(last + 1)

    # -- SMTP side -------------------------------------------------------------------------------------------
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == self.username and auth_data.password.decode() == (
            self.password or ""
        )
        return AuthResult(success=ok, handled=False)

    def _store(self, envelope: Envelope, session: Session) -> dict[str, Any]:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        with self._lock:
            index = next(self._ids)
            record = ReceivedMail(
                index=index,
                queue_id=f"SB{index:08d}",
                received_at=time.time(),
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                authenticated=bool(session.authenticated),
                reference=_header(raw, REFERENCE_HEADER),
                raw=raw.decode("utf-8", "replace"),
            )
            record.raw_bytes = raw
            self.messages.append(record)
            if record["reference"]:
                self.references[str(record["reference"])] += 1
        if self.inbox_file is not None:
            self.inbox_file.append({"kind": "mail", **{k: dict.__getitem__(record, k) for k in _STORED}})
        return record

    # -- queries ---------------------------------------------------------------------------------------------
    def received(self, to: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                m for m in self.messages if to is None or to.lower() in (r.lower() for r in m["rcpt_tos"])
            ]

    def count(self, reference: str) -> int:
        with self._lock:
            return self.references[reference]

    def one_click_unsubscribe(
        self, index: int | None = None, message_id: str | None = None
    ) -> dict[str, Any]:
        """POST ``List-Unsubscribe=One-Click`` to the message's https List-Unsubscribe URI (RFC 8058), as
        Gmail does: no cookies, no auth, form-encoded."""
        with self._lock:
            found = [
                m
                for m in self.messages
                if (index is not None and m["index"] == int(index))
                or (message_id and m["message_id"] == message_id)
            ]
        if not found:
            raise LookupError("no such message")
        message = found[0]
        header = message["list_unsubscribe"] or ""
        uris = [u.strip().strip("<>") for u in header.split(",")]
        url = next((u for u in uris if u.startswith(("https://", "http://"))), None)
        if url is None or (message["list_unsubscribe_post"] or "").strip() != "List-Unsubscribe=One-Click":
            raise ValueError("the message does not offer RFC 8058 one-click unsubscribe")
        response = requests.post(
            url,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=10,
        )
        return {"url": url, "status": response.status_code, "response": response.text[:500]}

    # -- inbox -----------------------------------------------------------------------------------------------
    def _inbox(self, request: Request) -> Response:
        address = unquote(request.path.removeprefix("/inbox").strip("/"))
        with self._lock:
            messages = list(self.messages)
        if not address:
            counts = Counter(r.lower() for m in messages for r in m["rcpt_tos"])
            rows = "".join(
                f"<tr><td><a href='/inbox/{quote(a)}'>{html.escape(a)}</a></td><td>{c}</td></tr>"
                for a, c in sorted(counts.items())
            )
            body = (
                f"<table><tr><th>Mailbox</th><th>Messages</th></tr>{rows}</table>"
                if rows
                else "<p>No mail.</p>"
            )
            return Response(page("Mail inbox", body), mimetype="text/html")
        mine = [m for m in messages if address.lower() in (r.lower() for r in m["rcpt_tos"])]
        cards = []
        for m in reversed(mine):
            when = datetime.fromtimestamp(m["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            unsubscribe = (
                " &middot; <span class='badge'>one-click unsubscribe</span>"
                if m["list_unsubscribe_post"]
                else ""
            )
            if m["html"]:
                content = email_frame(m["html"])
            else:
                content = f"<pre style='padding:14px;white-space:pre-wrap'>{linkify(m['text'] or '')}</pre>"
            content += link_list(links_in(m["html"], is_html=True) if m["html"] else links_in(m["text"] or ""))
            cards.append(
                f"<div class='mail'><div class='hdr'><b>{html.escape(m['subject'])}</b><br>"
                f"From {html.escape(m['from'])} &middot; {when}{unsubscribe}</div>{content}</div>"
            )
        body = "".join(cards) or "<p>No mail for this address.</p>"
        return Response(page(f"Mail to {address}", body, back="/inbox"), mimetype="text/html")
