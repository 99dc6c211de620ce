"""The Recoup application factory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from config import INSTANCE_DIR, Config, InsecureConfiguration, config_from_env, production_problems


def create_app(config: type[Config] | dict[str, Any] | None = None, **overrides: Any) -> Flask:
    """Build the app. ``config`` is a config class, or a dict of overrides on top of the environment's class."""
    app = Flask(__name__, instance_path=str(INSTANCE_DIR), instance_relative_config=False)
    if isinstance(config, type):
        app.config.from_object(config)
    else:
        app.config.from_object(config_from_env())
        if config:
            app.config.update(config)
    app.config.update(overrides)
    if app.config.get("ENV_NAME") == "production":
        problems = production_problems(app.config)
        if problems:
            raise InsecureConfiguration(problems)
    # JSON columns hold provider payloads: anything not JSON by nature (a Decimal, a datetime) is kept as text
    engine_options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    engine_options.setdefault("json_serializer", _json_dumps)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        # a dispatch run's sending threads each write an email's checkpoint on a connection of their own: with
        # SQLAlchemy's default pool (5 kept) the rest are opened and closed all the time, and opening one costs
        # more than the message (PyMySQL builds a TLS context for each)
        engine_options.setdefault("pool_size", int(app.config.get("DB_POOL_SIZE") or 20))
        engine_options.setdefault("max_overflow", 20)
        if _loopback_without_tls_options(app.config["SQLALCHEMY_DATABASE_URI"]):
            # PyMySQL otherwise builds a TLS context (the system's CA certificates read) for every connection it
            # opens, ~30 ms, to offer TLS to a server on this very host, where it protects nothing
            engine_options["connect_args"] = {"ssl_disabled": True, **engine_options.get("connect_args", {})}
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    _ensure_sqlite_folder(app.config["SQLALCHEMY_DATABASE_URI"])
    from app.ops.logs import configure as configure_logs

    configure_logs(app.config.get("LOG_FORMAT"))  # plain text, or JSON lines (RECOUP_LOG_FORMAT=json)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from app.extensions import babel, csrf, db, login_manager, migrate

    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(Path(__file__).resolve().parent.parent / "migrations"),
        render_as_batch=True,
        compare_type=True,
    )
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None

    from app import models  # noqa: F401  (every table registered before anything asks)
    from app.queue import make_queue

    app.extensions["recoup.queue"] = make_queue(app)

    from app.web import hardening, register_blueprints

    hardening.install(app)  # before any route: its URL converter, proxy handling, size limits, headers
    register_blueprints(app)

    from admin import init_admin

    init_admin(app)

    from app.cli import register_cli

    register_cli(app)
    return app


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _select_locale() -> str | None:
    from flask import current_app, g, has_request_context, request
    from flask_login import current_user

    if not has_request_context():
        return None
    if g.get("pay_locale"):  # the payment page speaks its customer's language (set by app.web.pay)
        return g.pay_locale  # type: ignore[no-any-return]
    if getattr(current_user, "is_authenticated", False) and current_user.locale:
        return current_user.locale  # type: ignore[no-any-return]
    return request.accept_languages.best_match(current_app.config["LANGUAGES"])


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _loopback_without_tls_options(url: str) -> bool:
    """A MariaDB URL on this host (loopback or its socket) that asks nothing of TLS: TLS there protects nothing. A
    URL with ``ssl_*`` options, or a server elsewhere, keeps PyMySQL's own choice (TLS when the server offers it)."""
    parsed = sa.engine.make_url(url)
    return (parsed.host in _LOOPBACK or parsed.host is None) and not any(k.startswith("ssl") for k in parsed.query)


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
