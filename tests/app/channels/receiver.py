"""A webhook receiver on a real socket: the stand-in for our own /hooks routes in channel tests."""

from __future__ import annotations

import time

from werkzeug.wrappers import Request, Response

from sandbox.harness import ReceivedRequest, SimulatorServer


class Receiver(SimulatorServer):
    """Answers every request 200 (or ``status``) and journals it."""

    name = "receiver"

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status

    def handle(self, request: Request) -> Response:
        return Response("ok", status=self.status)

    def wait_for(self, path: str, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.received(path)
            if len(seen) >= count:
                return seen
            time.sleep(0.02)
        return self.received(path)
