"""An application context for jobs: the worker's own app when there is one, else one built from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import current_app, has_app_context

_app: Any = None


def set_worker_app(app: Any) -> None:
    global _app
    _app = app


@contextmanager
def job_context() -> Iterator[Any]:
    if has_app_context():
        yield current_app._get_current_object()  # type: ignore[attr-defined]
        return
    global _app
    if _app is None:
        from app import create_app

        _app = create_app()
    with _app.app_context():
        yield _app
