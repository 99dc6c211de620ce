"""Logs: plain text by default (the demo), or one JSON object per line with ``RECOUP_LOG_FORMAT=json``.

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and when known ``request_id``,
``case_id`` and ``message_id`` (and ``exception`` with the traceback). The ids come from context variables set by
whoever knows them (:func:`log_context`: the web layer sets the request id for each request; the dispatcher and the
payment code set the message and case they are working on), or from ``extra={"case_id": ...}`` on one call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("request_id", "case_id", "message_id")
_context: dict[str, ContextVar[Any]] = {name: ContextVar(f"recoup_{name}", default=None) for name in CONTEXT_FIELDS}

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Every log line inside names these ids (``request_id``, ``case_id``, ``message_id``)."""
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"log_context takes {', '.join(CONTEXT_FIELDS)}, not {', '.join(sorted(unknown))}")
    tokens = [(_context[name], _context[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**ids: Any) -> list[Any]:
    """Set ids until :func:`unbind` (for code whose start and end are separate calls, such as a request)."""
    return [(_context[name], _context[name].set(value)) for name, value in ids.items()]


def unbind(tokens: list[Any]) -> None:
    for var, token in reversed(tokens):
        var.reset(token)


def current(name: str) -> Any:
    return _context[name].get()


class ContextFilter(logging.Filter):
    """Puts the context's ids on each record (an id given with ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, _context[name].get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = _context[name].get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(log_format: str | None) -> None:
    """Called by ``create_app``: ``json`` turns every line of the process into JSON; anything else keeps plain
    text (``logging.basicConfig``, which leaves a logging set up by someone else alone)."""
    root = logging.getLogger()
    if (log_format or "plain").lower() != "json":
        logging.basicConfig(level=logging.INFO, format=PLAIN_FORMAT)
        return
    ours = [h for h in root.handlers if getattr(h, "_recoup_json", False)]
    if not ours:
        handler = logging.StreamHandler()
        handler._recoup_json = True  # type: ignore[attr-defined]
        handler.setFormatter(JsonFormatter())
        handler.addFilter(ContextFilter())
        # plain stream handlers someone set up before (basicConfig) would print each line twice, once not JSON
        for old in [h for h in root.handlers if type(h) is logging.StreamHandler]:
            root.removeHandler(old)
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
