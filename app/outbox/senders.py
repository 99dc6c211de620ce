"""The channel senders this app uses: an enabled channel account from the database (entered in the admin, stored
encrypted) first, else the environment / config.

Built once per process and cached on the app. Saving a channel account resets this process's cache at once; other
processes (workers) notice within ``SENDERS_RECHECK_SECONDS`` (default 30) by a cheap look at the accounts table.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context

from app.accounts.fresh import CHANNEL_ACCOUNTS, forget, fresh
from app.channels.base import Channel, ChannelSender, ConfigurationError, OutboundMessage
from app.channels.email import EmailSender
from app.payments.links import open_pixel_token, tracking_token

log = logging.getLogger(__name__)

_CACHE_KEY = "recoup.senders"
_STAMP_KEY = "recoup.senders.stamp"


class ChannelNotConfigured(ConfigurationError):
    pass


def build_senders(app: Flask) -> dict[str, ChannelSender]:
    """Every configured channel's sender: the database's enabled account wins over the environment's."""
    senders = _config_senders(app)
    for channel, (settings, secrets, name) in _database_accounts(app).items():
        try:
            senders[channel] = _account_sender(app, channel, settings, secrets)
        except (ConfigurationError, KeyError, ValueError) as exc:
            # the message names the account and the error type only: an exception text may quote a secret
            log.error(
                "channel account %r (%s) cannot be used (%s); using the environment's",
                name,
                channel,
                type(exc).__name__,
            )
    return senders


def _tracking(app: Flask) -> tuple[Callable[..., str | None], Callable[..., str | None]]:
    base = app.config["PUBLIC_BASE_URL"].rstrip("/")
    secret = app.config["SECRET_KEY"]

    def pixel(message: OutboundMessage) -> str | None:
        mid = _message_id(message.reference)
        return f"{base}/t/o/{open_pixel_token(secret, mid)}.gif" if mid else None

    def click(message: OutboundMessage, url: str) -> str | None:
        mid = _message_id(message.reference)
        return f"{base}/t/c/{tracking_token(secret, mid, url)}" if mid else None

    return pixel, click


def _config_senders(app: Flask) -> dict[str, ChannelSender]:
    config = app.config
    senders: dict[str, ChannelSender] = {}
    if config.get("SMTP_URL"):
        pixel, click = _tracking(app)
        senders[Channel.EMAIL] = CheckpointEmailSender.from_url(
            config["SMTP_URL"], from_address=config["MAIL_FROM"], open_pixel=pixel, click_redirect=click
        )
    if config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN") and config.get("TWILIO_FROM"):
        from app.channels.sms import TwilioSender

        source = config["TWILIO_FROM"]
        service = source if source.startswith("MG") else None
        senders[Channel.SMS] = TwilioSender(
            config["TWILIO_ACCOUNT_SID"],
            config["TWILIO_AUTH_TOKEN"],
            None if service else source,
            messaging_service_sid=service,
            api_url=config["TWILIO_API_URL"],
        )
    if config.get("WHATSAPP_TOKEN") and config.get("WHATSAPP_PHONE_NUMBER_ID"):
        from app.channels.whatsapp import WhatsAppSender

        senders[Channel.WHATSAPP] = WhatsAppSender(
            config["WHATSAPP_TOKEN"],
            config["WHATSAPP_PHONE_NUMBER_ID"],
            api_url=config["WHATSAPP_API_URL"],
            waba_id=config.get("WHATSAPP_WABA_ID") or None,
        )
    return senders


def _account_sender(app: Flask, channel: str, settings: dict[str, Any], secrets: dict[str, str]) -> ChannelSender:
    config = app.config
    if channel == Channel.EMAIL:
        pixel, click = _tracking(app)
        return CheckpointEmailSender.from_url(
            secrets["smtp_url"],
            from_address=settings.get("from_address") or config["MAIL_FROM"],
            open_pixel=pixel,
            click_redirect=click,
        )
    if channel == Channel.SMS:
        from app.channels.sms import TwilioSender

        source = settings["from_number"]
        service = source if source.startswith("MG") else None
        return TwilioSender(
            settings["account_sid"],
            secrets["auth_token"],
            None if service else source,
            messaging_service_sid=service,
            api_url=settings.get("api_url") or config["TWILIO_API_URL"],
        )
    if channel == Channel.WHATSAPP:
        from app.channels.whatsapp import WhatsAppSender

        return WhatsAppSender(
            secrets["token"],
            settings["phone_number_id"],
            api_url=settings.get("api_url") or config["WHATSAPP_API_URL"],
            waba_id=settings.get("waba_id") or config.get("WHATSAPP_WABA_ID") or None,
        )
    raise ConfigurationError(f"unknown channel {channel!r}")


def _in_app(app: Flask, work: Callable[[], Any]) -> Any:
    if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
        return work()
    with app.app_context():
        return work()


def _database_accounts(app: Flask) -> dict[str, tuple[dict[str, Any], dict[str, str], str]]:
    """{channel: (settings, decrypted secrets, name)} of each channel's enabled account (the oldest wins).

    Read on a connection of its own, so the caller's session and transaction are never touched; a database
    without the table yet (not migrated) simply has no accounts.
    """
    from app.accounts.secrets import SecretsError, decrypt_credentials
    from app.extensions import db
    from app.models import ChannelAccount

    table = ChannelAccount.__table__

    def read() -> list[Any]:
        with db.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(table.c.channel, table.c.name, table.c.settings, table.c.credentials_encrypted)
                    .where(table.c.enabled.is_(True))
                    .order_by(table.c.id)
                )
            )

    try:
        rows = _in_app(app, read)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("channel accounts not readable (%s); using the environment's", type(exc).__name__)
        return {}
    accounts: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {}
    for channel, name, settings, token in rows:
        if channel in accounts:
            continue
        try:
            secrets = decrypt_credentials(app.config, token)
        except SecretsError:
            log.error("channel account %r: stored credentials cannot be decrypted; using the environment's", name)
            continue
        accounts[channel] = (dict(settings or {}), secrets, name)
    return accounts


def _accounts_stamp(app: Flask) -> tuple[Any, ...] | None:
    """What changes whenever a channel account is added, changed or deleted (None when unreadable)."""
    from app.extensions import db
    from app.models import ChannelAccount

    table = ChannelAccount.__table__

    def read() -> tuple[Any, ...]:
        with db.engine.connect() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.max(table.c.id), sa.func.max(table.c.updated_at))
            ).one()
        return tuple(str(v) for v in row)

    try:
        return _in_app(app, read)  # type: ignore[no-any-return]
    except sa.exc.SQLAlchemyError:
        return None


def senders_for(app: Flask) -> dict[str, ChannelSender]:
    cached: dict[str, Any] | None = app.extensions.get(_CACHE_KEY)
    recheck = float(app.config.get("SENDERS_RECHECK_SECONDS", 30))
    if cached is not None:
        stamp, checked_at = app.extensions.get(_STAMP_KEY, (None, 0.0))
        if time.monotonic() - checked_at < recheck:
            return cached
        current = _accounts_stamp(app)
        if current == stamp:
            app.extensions[_STAMP_KEY] = (stamp, time.monotonic())
            return cached
    stamp = _accounts_stamp(app)
    cached = build_senders(app)
    app.extensions[_CACHE_KEY] = cached
    app.extensions[_STAMP_KEY] = (stamp, time.monotonic())
    return cached


def channel_secret(app: Flask, channel: str, name: str, config_key: str) -> str | None:
    """One secret of the channel's enabled database account (e.g. the WhatsApp ``app_secret`` that signs webhooks),
    else the environment's ``config_key``. Webhooks follow an account saved a moment ago: within a second, at once
    in the process that saved it (app.accounts.fresh)."""
    account = fresh(app, CHANNEL_ACCOUNTS, lambda: _accounts_stamp(app), lambda: _database_accounts(app)).get(channel)
    if account is not None and account[1].get(name):
        return account[1][name]
    value = app.config.get(config_key)
    return str(value) if value else None


def reset_senders(app: Flask) -> None:
    forget(app, CHANNEL_ACCOUNTS)
    app.extensions.pop(_CACHE_KEY, None)
    app.extensions.pop(_STAMP_KEY, None)


def reference_for(message_id: int) -> str:
    return f"m{message_id}"


def _message_id(reference: str) -> int | None:
    if reference.startswith("m") and reference[1:].isdigit():
        return int(reference[1:])
    return None


message_id_from_reference = _message_id


# -- email: a checkpoint before the end-of-data dot (used by the dispatcher; see app.outbox) ----------------
#
# An SMTP server takes responsibility for a message only once it has read the end-of-data dot (RFC 5321 4.1.1.4:
# a connection lost before it aborts the transaction). The dispatcher records "the dot is about to go" in the
# database first, so after a crash an email whose checkpoint was never recorded was certainly not delivered and can
# be sent again; only one whose checkpoint was recorded (the server may have it) needs a person. The checkpoint can
# also veto the dot (the dispatcher lost its claim): the connection is then closed without it, nothing delivered.

_CRLF = b"\r\n"
_checkpoints = threading.local()


@dataclass
class DataCheckpoint:
    """What one email send reached. ``before_dot`` runs right before the dot is written; False (or an exception)
    abandons the message with nothing delivered."""

    before_dot: Callable[[], bool]
    after_reply: Callable[[int], None] | None = None  # the server's answer to the dot, before QUIT
    reached_dot: bool = False
    vetoed: bool = False


@contextmanager
def data_checkpoint(
    before_dot: Callable[[], bool], after_reply: Callable[[int], None] | None = None
) -> Iterator[DataCheckpoint]:
    """Within this block, an email sent by this thread calls ``before_dot`` before its final dot, and
    ``after_reply`` with the server's answer to it (so the outcome is recorded before QUIT and the rest)."""
    checkpoint = DataCheckpoint(before_dot, after_reply)
    previous = getattr(_checkpoints, "current", None)
    _checkpoints.current = checkpoint
    try:
        yield checkpoint
    finally:
        _checkpoints.current = previous


class _CheckpointData:
    def data(self, msg: bytes | str) -> tuple[int, bytes]:  # smtplib.SMTP.data, with the checkpoint
        checkpoint: DataCheckpoint | None = getattr(_checkpoints, "current", None)
        if checkpoint is None:
            return super().data(msg)  # type: ignore[misc,no-any-return]
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if isinstance(msg, str):
            msg = smtplib._fix_eols(msg).encode("ascii")  # type: ignore[attr-defined]
        content = smtplib._quote_periods(msg)  # type: ignore[attr-defined]
        if content[-2:] != _CRLF:
            content += _CRLF
        try:  # the dot is a second small write: without this, Nagle holds it for the server's delayed ACK (40 ms)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
        except (OSError, AttributeError):
            pass
        self.send(content)  # type: ignore[attr-defined]
        try:
            go_on = bool(checkpoint.before_dot())
        except Exception:
            log.exception("email checkpoint failed; abandoning the message before its final dot")
            go_on = False
        if not go_on:
            checkpoint.vetoed = True
            self.close()  # type: ignore[attr-defined]  # no dot: the server drops what it read
            raise smtplib.SMTPServerDisconnected("message abandoned before the end of DATA")
        checkpoint.reached_dot = True
        self.send(b"." + _CRLF)  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if checkpoint.after_reply is not None:
            try:
                checkpoint.after_reply(code)
            except Exception:
                log.exception("recording the answer to an email's final dot failed")
        return code, reply


class _CheckpointSMTP(_CheckpointData, smtplib.SMTP):
    pass


class _CheckpointSMTPSSL(_CheckpointData, smtplib.SMTP_SSL):
    pass


@functools.cache
def _local_hostname() -> str:
    """The EHLO name, looked up once: smtplib otherwise resolves it (a DNS round trip) on every connection."""
    return socket.getfqdn()


class CheckpointEmailSender(EmailSender):
    """:class:`EmailSender` whose SMTP connections honour :func:`data_checkpoint` (same conversation otherwise)."""

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        name = _local_hostname()
        if self.security == "ssl":
            smtp = _CheckpointSMTPSSL(self.host, self.port, name, timeout=self.timeout, context=self._tls())
        else:
            smtp = _CheckpointSMTP(self.host, self.port, name, timeout=self.timeout)
        try:
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # SMTP is many small writes
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls(self) -> ssl.SSLContext:
        # made once: loading the CA store costs tens of milliseconds, more than the rest of a send
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context
