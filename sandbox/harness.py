"""The harness every provider simulator runs in.

A simulator is a small HTTP server (cheroot, threaded, keeping HTTP/1.1 connections alive as the real providers do)
on a loopback port, started in-process by the tests or all together by ``flask --app wsgi sandbox``. Each one keeps
a journal of what it received and accepts injected faults, both through Python and through a control API under
``/_control/`` so that a test in another process, or a person running the demo, can look and poke:

    GET  /_control/requests            the journal (JSON list, newest last)
    POST /_control/reset               empty the journal and clear the faults
    POST /_control/faults              {"kind": "http_429", "count": 3, "path": "/api/query.php"}
                                       {"kind": "timeout", "rate": 0.2, "seed": 7}
                                       {"kind": "http_500", "count": 9, "after": 3} (the first 3 pass)
    GET  /_control/faults              the faults still armed

Faults a simulator understands beyond the generic ones are its own business (``truncated_xml`` for NMI, say); the
harness hands them over through :meth:`SimulatorServer.take_fault`. A ``reset`` fault drops the connection with a
TCP reset and no answer; ``stop()`` closes every connection at once, as an outage does.
"""

from __future__ import annotations

import errno
import json
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from cheroot.server import HTTPConnection
from cheroot.workers.threadpool import ThreadPool
from cheroot.wsgi import Server as WSGIServer
from werkzeug.wrappers import Request, Response

log = logging.getLogger(__name__)

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
    remote: str = ""  # the client's "address:port", one per TCP connection (not in the control API's journal)

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


# -- the HTTP server ---------------------------------------------------------------------------------------------
#: worker threads per simulator, each answering one request at a time. A kept-alive connection waiting for its next
#: request holds none (cheroot's selector watches those), so this is how many requests are answered at once: two
#: dispatching processes' sends in flight (DISPATCH_CONCURRENCY is 32 each), stalls and response delays included.
THREADS = 64
#: seconds a kept-alive connection may idle before the simulator closes it, as the real providers do after a while.
#: A client finds such a connection closed when it takes it from its pool, and opens another; but a close that
#: crosses a request on the wire fails that request (requests retries nothing once it is sent), which a sender must
#: read as "may have been sent". Longer than any pause between a test's requests, so that tests never meet it.
IDLE_TIMEOUT = 120
#: kept-alive connections a simulator keeps at most (Recoup keeps up to 128 per provider and process); cheroot's
#: default, 10, would close every connection over that after its answer
KEPT_CONNECTIONS = 512
#: the listen() backlog: a dispatcher opens its connections all at once (werkzeug's dev server had 128 too)
BACKLOG = 128
#: seconds stop() waits for the workers to finish what they are answering; their connections are closed by then, so
#: nobody waits for it, and a worker still stalled after that ends on its own (they are daemon threads)
STOP_WAIT = 0.25
#: seconds between two looks of cheroot's selector loop at stop() (which waits for it) and at idle connections
SELECT_INTERVAL = 0.05


class _Connection(HTTPConnection):
    """cheroot's connection, known to its server until it is closed (so that stop() can drop it), and able to end
    with a TCP reset instead of a close."""

    aborted = False

    def __init__(self, server: _Server, *args: Any) -> None:
        super().__init__(server, *args)
        with server.open_lock:
            server.open_connections.add(self)

    def abort(self) -> None:
        """End with a reset (RST) when closed, as when a provider's process or a middlebox drops the connection."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.aborted = True

    def close(self) -> None:
        # Under the lock, so that stop() never shuts down a socket whose descriptor is closed (and maybe reused).
        with self.server.open_lock:
            self.server.open_connections.discard(self)
            if self.aborted:
                self.rfile.close()
                self.socket.close()  # without cheroot's shutdown() first, which would send a FIN before the RST
            else:
                super().close()


class _Workers(ThreadPool):
    """cheroot's worker pool, whose stop() waits ``timeout`` at most: cheroot's own waits, past its timeout, until
    every worker has answered, however long a simulator stalls (a "timeout" fault, a response delay)."""

    def stop(self, timeout: float = STOP_WAIT) -> None:
        stopping = threading.Thread(target=super().stop, args=(timeout,), name="sim-workers-stop", daemon=True)
        stopping.start()
        stopping.join(timeout)


class _Server(WSGIServer):
    """cheroot's threaded WSGI server as a simulator needs it: HTTP/1.1 connections kept alive, errors to logging,
    its threads daemons, and every open connection droppable at once."""

    ConnectionClass = _Connection

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]], simulator: str) -> None:
        super().__init__((host, port), app, request_queue_size=BACKLOG, timeout=IDLE_TIMEOUT)
        self.simulator = simulator
        self.requests = _Workers(self, min=THREADS, max=THREADS)
        self.shutdown_timeout = STOP_WAIT
        self.keep_alive_conn_limit = KEPT_CONNECTIONS
        self.expiration_interval = SELECT_INTERVAL
        self.open_connections: set[_Connection] = set()
        self.open_lock = threading.Lock()

    def launch(self, thread_name: str) -> threading.Thread:
        """Bind, listen and serve on a daemon thread; return once listening, or raise what binding raised. Started
        from that thread, cheroot's own threads (the workers) are daemons too: a test process can exit without
        stopping its simulators."""
        listening = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.prepare()
            except BaseException as exc:  # the port is taken, say: for start() to raise
                failure.append(exc)
                return
            finally:
                listening.set()
            self.serve()

        thread = threading.Thread(target=run, name=thread_name, daemon=True)
        thread.start()
        listening.wait()
        if failure:
            raise failure[0]
        return thread

    @staticmethod
    def bind_socket(socket_: socket.socket, bind_addr: tuple[str, int]) -> socket.socket:
        """Bind with SO_REUSEADDR, on a free port (0) too, as werkzeug did (cheroot sets it on given ports only):
        the connections of a socket without it leave TIME_WAITs that keep start() after stop() from binding the
        port the first start was given."""
        socket_.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socket_.bind(bind_addr)
        return socket_

    def drop_connections(self) -> None:
        """Shut every open connection down, idle or answering: its client sees it closed at once, and an answer
        still being made goes nowhere."""
        with self.open_lock:
            for connection in self.open_connections:
                try:
                    connection.socket.shutdown(socket.SHUT_RDWR)
                except OSError:  # the client has gone already
                    pass

    def connection_of(self, environ: dict[str, Any]) -> _Connection | None:
        """The open connection a request came on: the one from its client's address and port."""
        remote = (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"))
        with self.open_lock:
            for connection in self.open_connections:
                if (connection.remote_addr, str(connection.remote_port)) == remote:
                    return connection
        return None

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """To logging, not stderr: an exception from the application is an error with its traceback, and cheroot's
        notes below a warning (a client gone away) are debug lines, which the demo's INFO log leaves out. cheroot
        logs no line per request."""
        level = level if level >= logging.WARNING else logging.DEBUG
        log.log(level, "%s simulator: %s", self.simulator, msg, exc_info=traceback)


class SimulatorServer:
    """Base class: subclasses implement :meth:`handle` (and may add control routes with :meth:`control`)."""

    name = "simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self.journal: list[ReceivedRequest] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> SimulatorServer:
        """Listen on ``host``:``port`` (port 0: a free one, then ``port`` says which) and serve; listening when this
        returns."""
        server = _Server(self.host, self.port, self.wsgi, self.name)
        self._thread = server.launch(f"sim-{self.name}")
        self._server = server
        self.port = server.bind_addr[1]
        return self

    def stop(self) -> None:
        """Go down at once, as a provider outage looks: every connection is closed (a client holding a kept-alive
        one finds it closed, one waiting for an answer gets none) and the port refuses connections. The port can be
        bound again straight away: start() after stop() serves on the same one."""
        server, self._server = self._server, None
        if server is None:
            return
        server.drop_connections()
        server.stop()  # stops accepting, closes the listening socket and the idle connections, ends the workers
        server.drop_connections()  # any accepted while it stopped

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
            remote=f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}",
        )
        with self._lock:
            self.journal.append(record)
        fault = self.take_fault(request.path, GENERIC_FAULTS)
        if fault is not None:
            if fault.kind == "timeout":
                time.sleep(fault.seconds)
                return Response("late", status=504)(environ, start_response)
            if fault.kind == "reset":
                server = self._server
                connection = server.connection_of(environ) if server is not None else None
                if connection is not None:
                    connection.abort()
                # cheroot ends a connection that raised ECONNRESET without a word, as when a client goes away
                raise ConnectionResetError(errno.ECONNRESET, "injected connection reset")
            status = int(fault.kind.split("_")[1])
            headers = {"Retry-After": "1"} if status == 429 else {}
            return Response(f"injected {fault.kind}", status=status, headers=headers)(environ, start_response)
        try:
            response = self.handle(request)
        except Exception as exc:  # a simulator bug must look like a provider 500, and be visible
            log.error("%s simulator: %s %s failed", self.name, request.method, request.path, exc_info=exc)
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
