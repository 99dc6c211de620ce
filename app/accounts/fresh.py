"""Accounts read per request, kept per process while they are unchanged.

A webhook's signature is checked with its account's secret, which lives encrypted in the database: reading and
decrypting it on every request cost more than the rest of the request. So each process keeps what it built from the
accounts, with a *stamp* of the table (count, newest id, latest change), and compares the stamp at most every
:data:`RECHECK_SECONDS`: an account saved, enabled or disabled elsewhere is followed within that long, and one
saved in this process at once (its saver calls :func:`forget`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

T = TypeVar("T")

RECHECK_SECONDS = 1.0
#: the keys of what is kept: NMI webhook verifiers (app.ingest.webhooks), channel accounts (app.outbox.senders)
NMI_VERIFIERS = "recoup.nmi_verifiers"
CHANNEL_ACCOUNTS = "recoup.channel_accounts"
_lock = threading.Lock()


def fresh(app: Flask, key: str, stamp: Callable[[], Any], build: Callable[[], T]) -> T:
    """What ``build()`` made, made again when ``stamp()`` changed (checked at most every RECHECK_SECONDS); a stamp
    that cannot be read (None) is never trusted."""
    now = time.monotonic()
    held = app.extensions.get(key)
    if held is not None and now - held[1] < RECHECK_SECONDS:
        return held[2]  # type: ignore[no-any-return]
    current = stamp()
    if held is not None and current is not None and current == held[0]:
        app.extensions[key] = (current, now, held[2])
        return held[2]  # type: ignore[no-any-return]
    value = build()
    with _lock:
        app.extensions[key] = (current, now, value) if current is not None else None
    return value


def forget(app: Flask, key: str) -> None:
    app.extensions.pop(key, None)
