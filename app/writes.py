"""One-statement writes in one round trip: webhooks stored before their answer (app.inbox, on
:func:`autocommit_engine`), many rows updated with values of their own (:func:`per_row`: ingest's customers).

On MariaDB the inbox's writes go through an engine of their own, of kept autocommit connections, used without a ping
before and a rollback after: one round trip instead of four. A connection the server dropped fails its statement and
is replaced (the caller decides what a failure means: a webhook is answered 5xx and the provider sends it again). On
SQLite the app's engine is used. (The outbox's checkpoints are transactions of several statements: app.outbox.send.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.extensions import db

_engines: dict[sa.Engine, sa.Engine] = {}
_guard = threading.Lock()


def autocommit_engine() -> sa.Engine:
    """The app's engine's one-round-trip twin on MariaDB; the app's engine elsewhere."""
    engine = db.engine
    if engine.dialect.name != "mysql":
        return engine
    with _guard:
        twin = _engines.get(engine)
        if twin is None:
            options = current_app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
            twin = _engines[engine] = one_round_trip_engine(
                engine.url, pool_size=options.get("pool_size", 20), max_overflow=options.get("max_overflow", 20),
                connect_args=options.get("connect_args", {}),
            )
            # its connections go with the app's engine's: kept, they would hold server connections for ever
            sa.event.listen(engine, "engine_disposed", _dispose_twin)
    return twin


def one_round_trip_engine(url: str | sa.URL, **options: Any) -> sa.Engine:
    """An engine of kept autocommit connections used without a ping before and a rollback after: a statement is one
    round trip and its own transaction (``options``: pool sizes, connect_args)."""
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, pool_pre_ping=False,
                            pool_reset_on_return=None, pool_recycle=1800, **options)


def _dispose_twin(engine: sa.Engine) -> None:
    with _guard:
        twin = _engines.pop(engine, None)
    if twin is not None:
        twin.dispose()


#: execution options for a statement built for one use (:func:`per_row`): not kept in the engine's statement cache
UNCACHED = {"compiled_cache": None}


def per_row(
    key: sa.Column[Any], values: Mapping[int, Any], type_: sa.types.TypeEngine[Any], name: str
) -> sa.TextClause:
    """Each row's own value, by its integer key, as one SQL expression (``CASE key WHEN k1 THEN v1 ...``), for an
    UPDATE of many rows with different values in one statement ``WHERE key IN (...)``. An executemany UPDATE is one
    round trip per row on MariaDB (PyMySQL batches INSERTs only); on a primary key, the one statement also locks the
    rows in key order, as a loop over sorted keys would.

    The keys, and values that are integers, are written into the SQL as numbers (``int()`` of them: nothing else
    can get in); other values are bound as ``name_0``, ``name_1``, ... with ``type_``. Built as text: as SQLAlchemy
    expressions, a chunk's thousand values cost more to build and compile than the UPDATE takes to run. Execute the
    statement with :data:`UNCACHED`: each is used once, and kept in the engine's statement cache they add up to
    hundreds of megabytes."""
    whens: list[str] = []
    binds: list[sa.BindParameter[Any]] = []
    for n, (k, value) in enumerate(values.items()):
        if type(value) is int:
            then = str(value)
        else:
            binds.append(sa.bindparam(f"{name}_{n}", value, type_=type_))
            then = f":{name}_{n}"
        whens.append(f"WHEN {int(k)} THEN {then}")
    return sa.text(f"CASE {key.name} {' '.join(whens)} END").bindparams(*binds)
