"""A MariaDB and a Redis of a test's own, on free loopback ports, that it may crash and restart at will (the
machine's shared servers are never touched). Used by the chaos month (``tests/chaos.py``).

MariaDB: a data directory made by ``mariadb-install-db`` in the test's work folder, served by ``mariadbd`` with
grant tables skipped (root, no password, loopback only). ``crash()`` is a SIGKILL: InnoDB recovers on the next
start, as after a power cut. Redis: ``redis-server`` with nothing kept on disk, so a restart loses everything it
held, like the machine's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def available() -> str | None:
    """Why private servers cannot run here (None: they can)."""
    for tool in ("mariadb-install-db", "mariadbd", "redis-server"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed"
    return None


class _Server:
    name = "server"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _answers(self.port)

    def start(self, timeout: float = 60) -> None:
        log = (self.work / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: see {self.work / (self.name + '.log')}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s")

    def crash(self) -> None:
        """SIGKILL: no clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.crash()
        self.proc = None


class PrivateMariaDB(_Server):
    name = "mariadb"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.datadir = work / "mariadb-data"

    @property
    def url(self) -> str:
        """A server URL (no database): ``mysql+pymysql://root@127.0.0.1:PORT``."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}"

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self, timeout: float = 60) -> None:
        if not self.datadir.exists():
            done = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                                   "--auth-root-authentication-method=normal", "--skip-test-db", *self._user()],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {done.stderr[-2000:] or done.stdout[-2000:]}")
        super().start(timeout)

    def command(self) -> list[str]:
        daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        return [daemon, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.work / 'mariadb.sock'}",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-log-bin",
                "--innodb-buffer-pool-size=64M", "--max-connections=300", *self._user()]

    def ready(self) -> bool:
        if not _answers(self.port):
            return False
        import pymysql

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
            return True
        except pymysql.err.MySQLError:
            return False


class PrivateRedis(_Server):
    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.work)]
