"""Configuration classes, read from the environment.

``Config`` is the embedded default a newcomer gets with no servers: SQLite under ``instance/`` and an in-process
queue. ``ProductionConfig`` expects MySQL/MariaDB (PyMySQL) and Redis. Every value can be overridden from the
environment, and every provider base URL is configurable (that is how the demo and the tests point the real
clients at the simulators in ``sandbox/``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "a whole number")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_number(name: str, default: Any, kind: Any, what: str) -> Any:
    raw = env(name)
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be {what}, got {raw!r}") from exc


def env_list(name: str) -> tuple[str, ...]:
    """A list in one variable, separated by commas or spaces: ``KEY_NEW,KEY_OLD``."""
    raw = env(name) or ""
    return tuple(part for part in raw.replace(",", " ").split() if part)


def env_bool(name: str, default: bool) -> bool:
    raw = env(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """Accept the short forms people paste (``mysql://``, relative ``sqlite:///instance/x.db``)."""
    if url.startswith("mysql://"):
        url = "mysql+pymysql://" + url.removeprefix("mysql://")
    if url.startswith("mysql+pymysql://") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        relative = url.removeprefix("sqlite:///")
        url = f"sqlite:///{BASE_DIR / relative}"
    return url


#: the signing key development runs with when none is given; production refuses it (see production_problems)
DEV_SECRET_KEY = "dev-only-change-me"
MIN_SECRET_LENGTH = 32


class Config:
    """Embedded defaults: no server needed."""

    ENV_NAME = "default"
    SECRET_KEY = env("SECRET_KEY", DEV_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = normalise_database_url(env("DATABASE_URL", "sqlite:///instance/recoup.db") or "")
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    DB_POOL_SIZE = env_int("RECOUP_DB_POOL_SIZE", 20)  # connections kept per process (MySQL/MariaDB)
    REDIS_URL = env("REDIS_URL")  # unset = in-process queue
    RQ_QUEUES = ("urgent", "high", "default", "low")
    FETCH_INTERVAL_SECONDS = env_int("RECOUP_FETCH_INTERVAL", 300)
    DISPATCH_INTERVAL_SECONDS = env_int("RECOUP_DISPATCH_INTERVAL", 30)
    #: how often the analytics rollups catch up with what changed (app.analytics.rollups)
    ANALYTICS_INTERVAL_SECONDS = env_int("RECOUP_ANALYTICS_INTERVAL", 60)
    #: how often running experiments are read: exposures stamped, guardrails checked (app.recovery.experiments)
    EXPERIMENTS_INTERVAL_SECONDS = env_int("RECOUP_EXPERIMENTS_INTERVAL", 300)
    # The dispatcher: sends in flight per worker, how long a claim lives without a heartbeat, how long one
    # dispatch job keeps claiming; when an unanswered WhatsApp send may be re-sent, when an unknown send goes to
    # a person, when an undelivered WhatsApp message falls back, and the window for merging a customer's reminders.
    # How often each worker does RQ's maintenance and makes sure the periodic jobs are scheduled (a Redis restart
    # loses them): workers.schedule.chain_keeping.
    WORKER_MAINTENANCE_SECONDS = env_int("RECOUP_WORKER_MAINTENANCE_SECONDS", 30)
    DISPATCH_CONCURRENCY = env_int("DISPATCH_CONCURRENCY", 32)
    DISPATCH_LEASE_SECONDS = env_int("DISPATCH_LEASE_SECONDS", 60)
    DISPATCH_BUDGET_SECONDS = env_int("DISPATCH_BUDGET_SECONDS", 25)
    WHATSAPP_RECONCILE_SECONDS = env_int("WHATSAPP_RECONCILE_SECONDS", 600)
    UNKNOWN_REVIEW_HOURS = env_float("UNKNOWN_REVIEW_HOURS", 24)
    WHATSAPP_DELIVERY_TIMEOUT_MINUTES = env_int("WHATSAPP_DELIVERY_TIMEOUT_MINUTES", 60)
    CONSOLIDATE_WINDOW_HOURS = env_int("CONSOLIDATE_WINDOW_HOURS", 24)
    # Keys for credentials stored in the database (Fernet, app.accounts.secrets): RECOUP_ENCRYPTION_KEY is a list,
    # the first
    # encrypts and every one decrypts (rotation: put the new key first, run `flask secrets rotate`, then drop the old).
    # RECOUP_CREDENTIALS_KEY is the older name of one such key. Without any, development derives one from SECRET_KEY;
    # production refuses to start.
    ENCRYPTION_KEYS = env_list("RECOUP_ENCRYPTION_KEY")
    CREDENTIALS_KEY = env("RECOUP_CREDENTIALS_KEY")
    # Keys for the audit log's keyed hashes and signed head (app.audit), outside the database: a list, the first
    # signs and every one verifies. Development derives one from SECRET_KEY; production refuses to start without.
    # `flask audit checkpoint` writes the signed head to AUDIT_CHECKPOINT_PATH (keep a copy elsewhere too).
    AUDIT_KEYS = env_list("RECOUP_AUDIT_KEY")
    AUDIT_CHECKPOINT_PATH = env("RECOUP_AUDIT_CHECKPOINT", str(INSTANCE_DIR / "audit-checkpoint.json"))
    PUBLIC_BASE_URL = env("RECOUP_PUBLIC_URL", "http://127.0.0.1:5000")
    MERCHANT_NAME = env("RECOUP_MERCHANT_NAME", "Recoup Demo Store")
    # What customers see of the merchant (the admin's settings win over these): app.messages.merchant
    MERCHANT_LOGO_URL = env("RECOUP_MERCHANT_LOGO_URL")
    MERCHANT_BRAND_COLOUR = env("RECOUP_MERCHANT_BRAND_COLOUR", "#1d4ed8")
    MERCHANT_WEBSITE_URL = env("RECOUP_MERCHANT_WEBSITE_URL")
    # The demo (`flask demo` turns it on): its control page at /admin/demo/ and a business clock that can be moved
    # forward (app.clock). DEMO_CLOCK alone enables the clock (tests). Never honoured by ProductionConfig.
    DEMO_MODE = False
    DEMO_CLOCK = env_bool("RECOUP_DEMO_CLOCK", False)  # a worker process of a time-warped test (tests/chaos.py)

    # Providers (normally entered in the admin; a default one may come from the environment)
    NMI_SECURITY_KEY = env("NMI_SECURITY_KEY")
    NMI_API_URL = env("NMI_API_URL", "https://secure.nmi.com/api")
    NMI_WEBHOOK_SIGNING_KEY = env("NMI_WEBHOOK_SIGNING_KEY")
    # Collect.js tokenizes card fields in the customer's browser: our server only ever sees a payment token.
    NMI_COLLECT_JS_URL = env("NMI_COLLECT_JS_URL", "https://secure.nmi.com/token/Collect.js")
    NMI_TOKENIZATION_KEY = env("NMI_TOKENIZATION_KEY")  # public key; without it only the card on file is offered
    MERCHANT_SUPPORT_EMAIL = env("RECOUP_SUPPORT_EMAIL")
    SMTP_URL = env("SMTP_URL")
    MAIL_FROM = env("MAIL_FROM", "Recoup Demo Store <billing@recoup.example>")
    TWILIO_ACCOUNT_SID = env("TWILIO_ACCOUNT_SID")
    TWILIO_AUTH_TOKEN = env("TWILIO_AUTH_TOKEN")
    TWILIO_FROM = env("TWILIO_FROM")
    TWILIO_API_URL = env("TWILIO_API_URL", "https://api.twilio.com")
    WHATSAPP_TOKEN = env("WHATSAPP_TOKEN")
    WHATSAPP_PHONE_NUMBER_ID = env("WHATSAPP_PHONE_NUMBER_ID")
    WHATSAPP_APP_SECRET = env("WHATSAPP_APP_SECRET")
    WHATSAPP_VERIFY_TOKEN = env("WHATSAPP_VERIFY_TOKEN")
    WHATSAPP_API_URL = env("WHATSAPP_API_URL", "https://graph.facebook.com/v21.0")
    WHATSAPP_WABA_ID = env("WHATSAPP_WABA_ID")  # the WhatsApp Business Account: template management

    # Flask / Flask-Admin / security
    FLASK_ADMIN_SWATCH = "cerulean"
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_DEFAULT_TIMEZONE = "UTC"
    LANGUAGES = ("en", "es")
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("RECOUP_SECURE_COOKIES", False)
    REMEMBER_COOKIE_HTTPONLY = True
    WTF_CSRF_ENABLED = True
    # Sign-in throttling (app.accounts.login_throttle): failures of one account from one client, of one client over
    # every
    # account, of one account over every client; how long a counter at its limit stays locked; when failures are
    # forgotten
    LOGIN_MAX_FAILURES = env_int("RECOUP_LOGIN_MAX_FAILURES", 5)
    LOGIN_CLIENT_MAX_FAILURES = env_int("RECOUP_LOGIN_CLIENT_MAX_FAILURES", 20)
    LOGIN_ACCOUNT_MAX_FAILURES = env_int("RECOUP_LOGIN_ACCOUNT_MAX_FAILURES", 50)
    LOGIN_LOCK_SECONDS = env_int("RECOUP_LOGIN_LOCK_SECONDS", 300)
    LOGIN_FAILURE_WINDOW_SECONDS = env_int("RECOUP_LOGIN_FAILURE_WINDOW_SECONDS", 900)
    # Requests: the largest body anywhere, and for provider webhooks (app.web.hardening); how many proxies in front
    # of Recoup set X-Forwarded-For / -Proto (0: none, the client is the connection's address)
    MAX_CONTENT_LENGTH = env_int("RECOUP_MAX_CONTENT_LENGTH", 4 * 1024 * 1024)
    WEBHOOK_MAX_CONTENT_LENGTH = env_int("RECOUP_WEBHOOK_MAX_CONTENT_LENGTH", 1024 * 1024)
    TRUSTED_PROXY_HOPS = env_int("RECOUP_TRUSTED_PROXIES", 0)
    # A signed-in session lasts this long at most (its cookie is refused after), and ends at sign-out everywhere
    PERMANENT_SESSION_LIFETIME = env_int("RECOUP_SESSION_HOURS", 12) * 3600
    # Operations (docs/operations.md): /readyz fails when the oldest due outbox row or waiting RQ job is older than
    # this; /metrics answers a bearer token when one is set, else only clients in these networks; logs as JSON lines
    # with RECOUP_LOG_FORMAT=json; a request's X-Request-ID is kept only when a trusted proxy sets it
    READY_MAX_LAG_SECONDS = env_int("RECOUP_READY_MAX_LAG_SECONDS", 900)
    METRICS_TOKEN = env("RECOUP_METRICS_TOKEN")
    METRICS_ALLOW = env_list("RECOUP_METRICS_ALLOW") or ("127.0.0.0/8", "::1/128")
    LOG_FORMAT = env("RECOUP_LOG_FORMAT", "plain")
    TRUST_REQUEST_ID = env_bool("RECOUP_TRUST_REQUEST_ID", TRUSTED_PROXY_HOPS > 0)


class ProductionConfig(Config):
    ENV_NAME = "production"
    # no default: a production database is named, with its own user and password (production_problems)
    SQLALCHEMY_DATABASE_URI = normalise_database_url(env("DATABASE_URL") or "")
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_recycle": 1800}
    REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
    SESSION_COOKIE_SECURE = env_bool("RECOUP_SECURE_COOKIES", True)


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret"
    SQLALCHEMY_DATABASE_URI = "sqlite:///:memory:"
    REDIS_URL = None
    WTF_CSRF_ENABLED = False
    PUBLIC_BASE_URL = "http://localhost"
    AUDIT_CHECKPOINT_PATH = None  # a test that wants one names its own file


class InsecureConfiguration(RuntimeError):
    """Production was asked to start with settings that would leave it open. The message lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("refusing to start under RECOUP_CONFIG=production:\n" + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """What keeps ``config`` from running in production, in words an operator can act on (empty: none)."""
    problems = []
    secret = str(config.get("SECRET_KEY") or "")
    if not _strong(secret):
        problems.append(
            f"SECRET_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} characters (not the development "
            "default); make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    keys = [*config.get("ENCRYPTION_KEYS", ()), *([config["CREDENTIALS_KEY"]] if config.get("CREDENTIALS_KEY") else [])]
    if not keys:
        problems.append(
            "RECOUP_ENCRYPTION_KEY must be set (a Fernet key, separate from SECRET_KEY) to encrypt stored gateway and "
            "channel secrets; make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        )
    for key in keys:
        if not _fernet_key(key):
            problems.append("RECOUP_ENCRYPTION_KEY holds a value that is not a Fernet key (32 url-safe base64 bytes)")
        elif key == secret:
            problems.append("RECOUP_ENCRYPTION_KEY must differ from SECRET_KEY")
    audit_keys = tuple(config.get("AUDIT_KEYS") or ())
    if not audit_keys or not all(_strong(k) for k in audit_keys):
        problems.append(
            f"RECOUP_AUDIT_KEY must be set to a random value of at least {MIN_SECRET_LENGTH} characters: it signs the "
            "audit log, and lives outside the database"
        )
    elif audit_keys and audit_keys[0] == secret:
        problems.append("RECOUP_AUDIT_KEY must differ from SECRET_KEY")
    public = str(config.get("PUBLIC_BASE_URL") or "")
    if not public.lower().startswith("https://"):
        problems.append(
            f"RECOUP_PUBLIC_URL must be an https:// URL (it is {public or 'unset'!r}): customers' payment and "
            "unsubscribe links are built from it, and one-click unsubscribe (RFC 8058) needs HTTPS"
        )
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        problems.append("DATABASE_URL must be set (mysql+pymysql://USER:PASSWORD@HOST/DB, a user of its own)")
    elif "://root:@" in str(config["SQLALCHEMY_DATABASE_URI"]):
        problems.append("DATABASE_URL names the root user with no password")
    return problems


def _strong(secret: str) -> bool:
    return len(secret) >= MIN_SECRET_LENGTH and secret != DEV_SECRET_KEY and len(set(secret)) >= 10


def _fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError):
        return False


CONFIGS = {"default": Config, "production": ProductionConfig, "testing": TestingConfig}


def config_from_env() -> type[Config]:
    name = env("RECOUP_CONFIG", "default") or "default"
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"RECOUP_CONFIG must be one of {', '.join(CONFIGS)}, got {name!r}") from None
