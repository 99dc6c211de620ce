"""Users and sign-in: creating accounts, checking passwords with throttling. No Flask request needed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

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


def authenticate(email: str, password: str, *, max_failures: int, lock_seconds: int) -> SignInResult:
    """Check a password, locking the account for a while after too many failures in a row."""
    generic = "Email or password is not right."
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    now = utcnow()
    if user is None:
        return SignInResult(None, generic)
    if user.locked_until and user.locked_until > now:
        return SignInResult(None, "Too many failed attempts. Try again in a few minutes.")
    if not user.active:
        return SignInResult(None, generic)
    if not user.check_password(password):
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = now + timedelta(seconds=lock_seconds)
            user.failed_logins = 0
            record(user.email, "user.locked", "user", user.id, {"seconds": lock_seconds})
        db.session.commit()
        return SignInResult(None, generic)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    record(user.email, "user.sign_in", "user", user.id, {})
    db.session.commit()
    return SignInResult(user, None)


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
