"""Users and sign-in: creating accounts, checking passwords with throttling. No Flask request needed."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from app.accounts import login_throttle
from app.audit import record
from app.extensions import db
from app.models import ROLES, Role, User
from app.models.types import utcnow


class UserError(ValueError):
    pass


def ensure_roles() -> dict[str, Role]:
    existing = {r.name: r for r in db.session.scalars(sa.select(Role))}
    for name, description in ROLES.items():
        if name not in existing:
            existing[name] = Role(name=name, description=description)
            db.session.add(existing[name])
    db.session.flush()
    return existing


def create_user(email: str, password: str, roles: list[str], *, name: str | None = None, actor: str = "cli") -> User:
    email = email.strip().lower()
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise UserError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if db.session.scalar(sa.select(User).where(User.email == email)):
        raise UserError(f"a user {email} already exists")
    known = ensure_roles()
    user = User(email=email, name=name)
    try:
        user.set_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    user.roles = [known[r] for r in roles]
    db.session.add(user)
    db.session.flush()
    record(actor, "user.create", "user", user.id, {"email": email, "roles": sorted(roles)})
    db.session.commit()
    return user


@dataclass(frozen=True)
class SignInResult:
    user: User | None
    error: str | None


NOT_RIGHT = "Email or password is not right."
TOO_MANY = "Too many failed attempts. Try again in a few minutes."


@functools.cache
def _dummy_hash() -> str:
    """A hash to check a password against when there is no account, so that an unknown email costs the same time as
    a known one (a fast answer would tell them apart)."""
    return generate_password_hash("no account has this password")


def authenticate(email: str, password: str, *, client: str = "unknown",
                 limits: login_throttle.SignInLimits | None = None, max_failures: int | None = None,
                 lock_seconds: int | None = None) -> SignInResult:
    """Check a password, throttled per account and client, per client and per account (app.accounts.login_throttle).

    The answer and the work are the same whether the account exists, is inactive or the password is wrong; only a
    throttled attempt is answered without a check (and that says nothing about the account either)."""
    limits = limits or login_throttle.SignInLimits()
    if max_failures is not None or lock_seconds is not None:
        limits = replace(limits, per_account_and_client=max_failures or limits.per_account_and_client,
                         lock_seconds=lock_seconds or limits.lock_seconds)
    address = email.strip().lower()
    attempt = login_throttle.counters(address, client, limits)
    if not login_throttle.reserve(attempt, limits):
        return SignInResult(None, TOO_MANY)
    user = db.session.scalar(sa.select(User).where(User.email == address))
    right = user.check_password(password) if user is not None else check_password_hash(_dummy_hash(), password)
    now = utcnow()
    if not right or user is None or not user.active:
        locked = login_throttle.failed(attempt, limits, now)
        if user is not None:
            db.session.execute(sa.update(User).where(User.id == user.id)
                               .values(failed_logins=User.failed_logins + 1))
            for counter in locked:
                until = now + timedelta(seconds=limits.lock_seconds)
                if counter.kind == "account":  # locked for everyone: shown on the user in the admin
                    db.session.execute(sa.update(User).where(User.id == user.id).values(locked_until=until))
                if counter.kind != "client":
                    record(user.email, "user.locked", "user", user.id,
                           {"seconds": limits.lock_seconds, "scope": counter.kind, "client": client})
        db.session.commit()
        return SignInResult(None, NOT_RIGHT)
    login_throttle.succeeded(attempt, now)
    login_throttle.prune(limits, now)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    record(user.email, "user.sign_in", "user", user.id, {})
    db.session.commit()
    return SignInResult(user, None)


def end_sessions(user: User) -> None:
    """Every session of ``user`` stops working (signing out ends them all, on every device). Committed."""
    db.session.execute(sa.update(User).where(User.id == user.id)
                       .values(session_version=User.session_version + 1))
    record(user.email, "user.sign_out", "user", user.id, {})
    db.session.commit()


def update_profile(user: User, *, name: str | None, locale: str | None, timezone: str | None) -> None:
    """A person's own preferences (name, language, time zone), audited and committed. The caller validated them."""
    before = {"name": user.name, "locale": user.locale, "timezone": user.timezone}
    user.name, user.locale, user.timezone = name or None, locale or None, timezone or None
    after = {"name": user.name, "locale": user.locale, "timezone": user.timezone}
    changed = sorted(k for k in after if after[k] != before[k])
    if changed:
        record(user.email, "user.profile_update", "user", user.id, {"changed": changed})
    db.session.commit()


def change_password(user: User, current: str, new: str) -> None:
    """A person changes their own password: the current one must be right. UserError says what is wrong."""
    if not user.check_password(current):
        raise UserError("the current password is not right")
    try:
        user.set_password(new)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    record(user.email, "user.password_change", "user", user.id, {})
    db.session.commit()
