"""Pieces the messaging simulators share: a scheduler that delivers webhooks later, and the inbox page
chrome."""

from __future__ import annotations

import heapq
import html
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests


class WebhookScheduler:
    """Runs callables at a given time on a few daemon threads (provider webhooks arrive after small delays).

    ``log`` keeps what each delivery returned, newest last, so tests and people can see the callbacks."""

    def __init__(self, workers: int = 4, name: str = "webhooks") -> None:
        self._heap: list[tuple[float, int, Callable[[], Any]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._pending = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def at(self, delay: float, job: Callable[[], Any]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._counter), job))
            self._pending += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, job = heapq.heappop(self._heap)
            try:
                job()
            except Exception:  # a webhook that fails must not kill the scheduler
                pass
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every scheduled job has run (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def clear(self) -> None:
        with self._cond:
            self._pending -= len(self._heap)
            self._heap.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def post_webhook(
    session: requests.Session,
    url: str,
    *,
    data: Any = None,
    body: bytes | None = None,
    headers: dict[str, str],
) -> dict[str, Any]:
    """POST and describe the outcome (status, or the connection error) for the callback log."""
    started = time.time()
    try:
        response = session.post(url, data=body if body is not None else data, headers=headers, timeout=10)
        return {"at": started, "url": url, "status": response.status_code, "response": response.text[:500]}
    except requests.RequestException as exc:
        return {"at": started, "url": url, "status": None, "error": str(exc)}


PAGE_STYLE = """
body{font-family:-apple-system,Segoe
UI,Roboto,Helvetica,Arial,sans-serif;background:#f3f4f6;margin:0;color:#111}
header{background:#111827;color:#fff;padding:12px 20px}header a{color:#93c5fd}
main{max-width:900px;margin:20px auto;padding:0 12px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{padding:8px 10px;border-bottom:1px solid
#e5e7eb; text-align:left;font-size:14px} .phone{width:380px;margin:0
# auto;background:#fff;border-radius:28px;border:10px solid #111827;padding:14px;
min-height:420px}
.phone h2{font-size:15px;text-align:center;margin:0 0 12px;color:#374151}
.bubble{background:#e5e7eb;border-radius:16px;padding:9px 12px;margin:8px
0;max-width:85%;white-space:pre-wrap; word-wrap:break-word;font-size:14px}
.bubble.in{background:#3b82f6;color:#fff;margin-left:auto}
.wa .bubble{background:#fff;border:1px solid #d1d5db}.wa
.bubble.in{background:#dcf8c6;color:#111}.wa{background:#ece5dd}
.meta{font-size:11px;color:#6b7280;margin-top:4px}.bubble.in .meta{color:#dbeafe}
.badge{display:inline-block;font-size:11px;padding:1px
6px;border-radius:8px;background:#d1fae5;color:#065f46} .badge.bad{background:#fee2e2;color:#991b1b}
.mail{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:0 0 16px;overflow:hidden} .mail
.hdr{padding:10px 14px;border-bottom:1px solid #e5e7eb;font-size:13px;color:#374151} .mail
iframe{width:100%;height:600px;border:0} .links{padding:8px 14px;border-top:1px solid #e5e7eb;font-size:13px}
.links ul{margin:4px 0 0;padding-left:18px} .links a,.bubble a{word-break:break-all}
.bubble.in a{color:#fff}
"""


def page(title: str, body: str, *, back: str | None = None) -> str:
    nav = f' &middot; <a href="{html.escape(back)}">back</a>' if back else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head><body><header><strong>Recoup sandbox</strong> &middot; "
        f"{html.escape(title)}{nav}</header><main>{body}</main></body></html>"
    )


class InboxFile:
    """What a simulator's inbox shows, kept as JSON lines in a file (one event a line, appended as it happens), so
    a restarted demo shows the messages its database remembers. Only the demo gives a simulator one; tests and
    benchmarks keep everything in memory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> list[dict[str, Any]]:
        """Every event written so far, oldest first. A line cut short by a crash is skipped, not fatal."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    def append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)

    def clear(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)


_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def linkify(text: str) -> str:
    """Escaped text whose web addresses are links that open in a new tab (a payment page refuses to be framed)."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?")
        out.append(html.escape(text[last : match.start()]))
        out.append(f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">{html.escape(url)}</a>')
        last = match.start() + len(url)
    out.append(html.escape(text[last:]))
    return "".join(out)


def links_in(body: str, *, is_html: bool = False) -> list[str]:
    """The distinct web addresses a reader can follow, in order: an HTML body's link targets (not its images), or
    the addresses written in a plain text."""
    if is_html:
        found = [html.unescape(u) for u in re.findall(r"""<a\s[^>]*href=["']([^"']+)["']""", body, re.I)]
    else:
        found = [u.rstrip(".,;:!?") for u in _URL.findall(body)]
    return [u for u in dict.fromkeys(found) if u.startswith(("http://", "https://"))]


def email_frame(body_html: str) -> str:
    """An email's HTML in a sandboxed frame (no scripts, no forms) whose links open in a new, unsandboxed tab: a
    payment page forbids being framed (CSP frame-ancestors), so it must never open inside the frame."""
    base = '<base target="_blank">'
    head = re.search(r"<head[^>]*>", body_html, re.I)
    document = body_html[: head.end()] + base + body_html[head.end() :] if head else base + body_html
    return (
        '<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" '
        f'srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )


def link_list(urls: list[str]) -> str:
    if not urls:
        return ""
    items = "".join(
        f'<li><a href="{html.escape(u, quote=True)}" target="_blank" rel="noopener">{html.escape(u)}</a></li>'
        for u in urls
    )
    return f"<div class='links'><b>Links in this message</b> (open in a new tab)<ul>{items}</ul></div>"
