"""The harness every provider simulator runs in.

A simulator is a small HTTP server (werkzeug, threaded) on a loopback port, started in-process by the tests or all
together by ``flask --app wsgi sandbox``. Each one keeps a journal of what it received and accepts injected faults,
both through Python and through a control API under ``/_control/`` so that a test in another process, or a person
running the demo, can look and poke:

    GET  /_control/requests            the journal (JSON list, newest last)
    POST /_control/reset               empty the journal and clear the faults
    POST /_control/faults              {"kind": "http_429", "count": 3, "path": "/api/query.php"}
                                       {"kind": "timeout", "rate": 0.2, "seed": 7}
                                       {"kind": "http_500", "count": 9, "after": 3} (the first 3 pass)
    GET  /_control/faults              the faults still armed

Faults a simulator understands beyond the generic ones are its own business (``truncated_xml`` for NMI, say); the
harness hands them over through :meth:`SimulatorServer.take_fault`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

#: faults the harness applies itself before the simulator sees the request
GENERIC_FAULTS = frozenset({"http_429", "http_500", "http_502", "http_503", "timeout", "reset"})


@dataclass
class Fault:
    """One armed fault: fires ``count`` more times, or on a share ``rate`` of matching requests."""

    kind: str
    path: str | None = None  # only requests whose path ends with this
    count: int | None = None
    rate: float | None = None
    seconds: float = 5.0  # how long a "timeout" stalls
    seed: int | None = None
    after: int = 0  # let this many matching requests through first
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.count is None and self.rate is None:
            self.count = 1
        if self.seed is not None:
            self._rng = random.Random(self.seed)

    def matches(self, path: str) -> bool:
        return self.path is None or path.endswith(self.path)

    def fire(self) -> bool:
        if self.after > 0:
            self.after -= 1
            return False
        if self.count is not None:
            if self.count <= 0:
                return False
            self.count -= 1
            return True
        return self._rng.random() < (self.rate or 0.0)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.count <= 0

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass(frozen=True)
class ReceivedRequest:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
        }


class SimulatorServer:
    """Base class: subclasses implement :meth:`handle` (and may add control routes with :meth:`control`)."""

    name = "simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self.journal: list[ReceivedRequest] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> SimulatorServer:
        self._server = make_server(self.host, self.port, self.wsgi, threaded=True)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- faults and journal ------------------------------------------------------------------------------------
    def inject(self, kind: str, **options: Any) -> Fault:
        fault = Fault(kind=kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.journal.clear()

    def take_fault(self, path: str, kinds: Iterable[str]) -> Fault | None:
        """The first armed fault of one of ``kinds`` that fires for ``path``, consumed."""
        wanted = set(kinds)
        with self._lock:
            for fault in self._faults:
                if fault.kind in wanted and fault.matches(path) and fault.fire():
                    if fault.spent:
                        self._faults.remove(fault)
                    return fault
        return None

    def received(self, path_suffix: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.journal if path_suffix is None or r.path.endswith(path_suffix)]

    # -- WSGI ----------------------------------------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_control/"):
            return self._control(request)(environ, start_response)
        body = request.get_data(cache=True)
        record = ReceivedRequest(
            at=time.time(),
            method=request.method,
            path=request.path,
            query=dict(request.args),
            headers={k: v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self.journal.append(record)
        fault = self.take_fault(request.path, GENERIC_FAULTS)
        if fault is not None:
            if fault.kind == "timeout":
                time.sleep(fault.seconds)
                return Response("late", status=504)(environ, start_response)
            if fault.kind == "reset":
                raise ConnectionResetError("injected connection reset")
            status = int(fault.kind.split("_")[1])
            headers = {"Retry-After": "1"} if status == 429 else {}
            return Response(f"injected {fault.kind}", status=status, headers=headers)(environ, start_response)
        try:
            response = self.handle(request)
        except Exception as exc:  # a simulator bug must look like a provider 500, and be visible
            response = Response(f"simulator error: {exc!r}", status=500)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:  # pragma: no cover - subclasses implement
        return Response("not found", status=404)

    def control(self, request: Request) -> Response | None:
        """Simulator-specific control routes; return None for "not mine"."""
        return None

    def _control(self, request: Request) -> Response:
        own = self.control(request)
        if own is not None:
            return own
        action = request.path.removeprefix("/_control/").strip("/")
        if action == "requests":
            with self._lock:
                data = [r.to_dict() for r in self.journal]
            return json_response(data)
        if action == "reset" and request.method == "POST":
            self.reset()
            return json_response({"ok": True})
        if action == "faults":
            if request.method == "POST":
                spec = request.get_json(force=True, silent=True)
                if not isinstance(spec, dict) or "kind" not in spec:
                    return json_response({"error": "body must be a JSON object with 'kind'"}, 400)
                try:
                    fault = self.inject(**spec)
                except TypeError as exc:
                    return json_response({"error": str(exc)}, 400)
                return json_response(fault.describe(), 201)
            with self._lock:
                return json_response([f.describe() for f in self._faults])
        return json_response({"error": f"no control action {action!r}"}, 404)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")
