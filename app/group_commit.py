"""Group commit: one writer thread per process stores what many threads hand it, many items in one commit.

A commit on MariaDB is a write to its log on disk: about half a millisecond of the server's CPU and a few of waiting,
whether it carries one row or fifty, and each statement costs the client a round trip and the driver's work. So where
many threads of one process each need a small write committed before they go on (a webhook stored before its answer,
a message's checkpoint before its provider call), each hands its item to the process's writer and waits; the writer
writes every item handed to it meanwhile in one go, then answers them all. A busy process commits many at a time, an
idle one each at once (no waiting for company: while one commit is on its way, the next items gather).

Used by the webhook inbox (:mod:`app.inbox`) and the outbox's checkpoints (:mod:`app.outbox.send`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from app.extensions import db

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

_guard = threading.Lock()


class WriteTimeout(Exception):
    """An item was not written within the writer's timeout (the caller decides what that means)."""


@dataclass(eq=False)
class _Handed(Generic[Item, Result]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


class GroupWriter(Generic[Item, Result]):
    """One per process (and app and purpose): writes the items its threads hand it, up to ``batch`` at a time, with
    ``write(engine, items)``, which returns each item's result, or the exception that kept it from being written, in
    order; ``on_stop()`` runs on the writer's thread as it ends."""

    def __init__(self, name: str, engine: sa.Engine,
                 write: Callable[[sa.Engine, Sequence[Item]], Sequence[Result | BaseException]], *,
                 batch: int, timeout: float, on_stop: Callable[[], None] | None = None) -> None:
        self.name = name
        self.engine = engine
        self.pid = os.getpid()
        self.stopped = False
        self._write = write
        self._batch = batch
        self._timeout = timeout
        self._on_stop = on_stop
        self._handed: list[_Handed[Item, Result]] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"recoup-{name}-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> tuple[bool, Result | None]:
        """``(True, result)`` once written; ``(False, None)``: this writer has stopped, take a new one
        (:func:`writer_of`). Raises what kept the item from being written, or :class:`WriteTimeout`."""
        handed: _Handed[Item, Result] = _Handed(item)
        with self._ready:
            if self.stopped:
                return False, None
            self._handed.append(handed)
            self._ready.notify()
        if not handed.done.wait(self._timeout):
            raise WriteTimeout(f"{self.name}: not written within {self._timeout:g} s")
        if handed.error is not None:
            raise handed.error
        return True, handed.result

    def stop(self) -> None:
        """Write what was handed, then end (the app's engine was disposed)."""
        with self._ready:
            self.stopped = True
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._handed and not self.stopped:
                    self._ready.wait()
                if not self._handed:
                    break
                batch, self._handed = self._handed[:self._batch], self._handed[self._batch:]
            try:
                results: Sequence[Any] = self._write(self.engine, [handed.item for handed in batch])
            except BaseException as exc:
                log.error("%s: %d item(s) could not be written", self.name, len(batch), exc_info=exc)
                results = [exc] * len(batch)
            for handed, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    handed.error = result
                else:
                    handed.result = result
                handed.done.set()
        if self._on_stop is not None:
            self._on_stop()


def writer_of(key: str, make: Callable[[], GroupWriter[Any, Any]]) -> GroupWriter[Any, Any]:
    """The current app's writer under ``key`` in this process (a new one after a fork, whose threads do not survive
    it, or once the app's engine was disposed: tests dispose theirs between tests)."""
    from flask import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    writer = app.extensions.get(key)
    if writer is None or writer.pid != os.getpid() or writer.stopped:
        with _guard:
            writer = app.extensions.get(key)
            if writer is None or writer.pid != os.getpid() or writer.stopped:
                writer = app.extensions[key] = make()
                sa.event.listen(db.engine, "engine_disposed", lambda _engine: writer.stop(), once=True)
    return writer  # type: ignore[no-any-return]


def submit(key: str, make: Callable[[], GroupWriter[Item, Result]], item: Item) -> Result:
    """``item`` written by the current app's writer under ``key``: its result."""
    while True:
        written, result = writer_of(key, make).submit(item)
        if written:
            return result  # type: ignore[return-value]
        # the writer stopped as this arrived: the next one writes it
