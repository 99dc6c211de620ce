"""The app served over a real socket, in this process: for browsers, simulators' webhooks and concurrent clients."""

from __future__ import annotations

import threading
from typing import Any


class LiveServer:
    """``app`` served on a free port by a threaded werkzeug server. The port is bound at once (``url`` is known
    before the server starts: the demo's simulators need it); ``with`` starts and stops it."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
