"""Worker "hosts" on one machine: network namespaces (``ip netns``), each joined to the root namespace by a veth
pair with a /30 of its own, and small TCP forwarders in the root namespace that carry a host's connections to the
services on loopback (MariaDB, Redis, the provider simulators). Cutting a host off is ``ip link set <veth> down``
on the root side: its TCP connections hang (no reset, no FIN), as when a machine drops off the network.

Used by ``tests/workers/test_two_hosts.py``. Needs root (or CAP_NET_ADMIN) and iproute2; :func:`netns_refused`
says why not when it cannot work here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=15)


def netns_refused() -> str | None:
    """None when namespaces and veth pairs can be made here, else why not."""
    name = f"recoup-probe-{os.getpid()}"
    try:
        made = ip("netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns not usable: {exc}"
    if made.returncode:
        return f"ip netns add not permitted: {made.stderr.strip()}"
    try:
        veth = ip("link", "add", f"rcpp{os.getpid() % 100000}", "type", "veth", "peer", "name", "rcpq", "netns",
                  name, check=False)
        if veth.returncode:
            return f"veth pairs not permitted: {veth.stderr.strip()}"
    finally:
        ip("link", "del", f"rcpp{os.getpid() % 100000}", check=False)
        ip("netns", "del", name, check=False)
    return None


# The forwarder stands in for the server's end of a host's connections, so it detects a host that vanished as the
# servers do when configured as docs/operations.md says (MariaDB's tcp_keepalive_*, Redis's tcp-keepalive), only
# faster: a silent peer is dropped after ~5 s, and then the server's side closes (a session's open transaction is
# rolled back and its row locks freed; a GET_LOCK is released)
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, USER_TIMEOUT_MS = 2, 1, 3, 5000


def _detect_dead_peer(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)  # unacknowledged data too


class TcpForwarder:
    """Accepts on ``listen`` (address, port 0 = any free port) and carries each connection to ``target``, bytes
    both ways, one thread per direction. A connection's two halves close together; a client that stops answering
    (its link is down) is dropped after a few seconds of keepalive probes, closing the upstream half too."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server((listen_host, 0))
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.accepted = 0  # connections so far
        threading.Thread(target=self._accept, name=f"forward-{self.address}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            _detect_dead_peer(client)
            self.accepted += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._sockets.difference_update((source, sink))

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@dataclass
class Host:
    """One namespace: ``gateway`` is the root side of its veth (where its forwarders listen), ``address`` its
    own side."""

    name: str
    veth: str  # root side; ``ip link set <veth> down`` cuts the host off
    gateway: str
    address: str
    forwarders: dict[tuple[str, int], TcpForwarder] = field(default_factory=dict)

    def forward(self, host: str, port: int) -> tuple[str, int]:
        """Where, seen from inside this namespace, ``host:port`` of the root namespace answers."""
        key = (host, port)
        if key not in self.forwarders:
            self.forwarders[key] = TcpForwarder(self.gateway, key)
        return self.forwarders[key].address

    def reroute(self, url: str) -> str:
        """``url`` (any scheme, credentials kept) as this host reaches it: through its forwarder."""
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None and parts.scheme not in DEFAULT_PORTS:
            return url
        host, port = self.forward(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme])
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def connections(self) -> int:
        """Connections this host has opened so far, to every service."""
        return sum(f.accepted for f in self.forwarders.values())

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        ip("link", "set", self.veth, "down")

    def restore(self) -> None:
        ip("link", "set", self.veth, "up")


DEFAULT_PORTS = {"mysql+pymysql": 3306, "mysql": 3306, "redis": 6379, "http": 80, "smtp": 25}


class Hosts:
    """``count`` namespaces with their veth pairs; :meth:`close` (also on failure) removes them and stops the
    forwarders. Use as a context manager."""

    def __init__(self, count: int) -> None:
        self.hosts: list[Host] = []
        tag = os.getpid() % 100000
        subnet = 8 + os.getpid() % 60 * 4  # third octet: a run of its own, next to another run's
        try:
            for i in range(count):
                name, veth = f"recoup-{tag}-h{i}", f"rcp{tag}h{i}"
                gateway, address = f"10.77.{subnet + i}.1", f"10.77.{subnet + i}.2"
                ip("netns", "add", name)
                self.hosts.append(Host(name, veth, gateway, address))
                ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
                ip("addr", "add", f"{gateway}/30", "dev", veth)
                ip("link", "set", veth, "up")
                ip("netns", "exec", name, "ip", "addr", "add", f"{address}/30", "dev", "eth0")
                ip("netns", "exec", name, "ip", "link", "set", "eth0", "up")
                ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> list[Host]:
        return self.hosts

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts:
            for forwarder in host.forwarders.values():
                forwarder.close()
            ip("link", "del", host.veth, check=False)  # also removes its peer in the namespace
            ip("netns", "del", host.name, check=False)
        self.hosts = []
