"""People who sign in to the admin, and their roles."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.orm.base import NO_VALUE
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models.types import MYSQL_TABLE_ARGS, UTCDateTime, utcnow

#: role -> what it is for (admin UI shows these)
ROLES = {
    "admin": "Users, settings and secrets",
    "author": "Drafts of policies and templates; simulate",
    "approver": "Approves and activates versions someone else wrote",
    "operator": "Cases, customers and escalations",
    "auditor": "Reads everything, changes nothing",
}

user_roles = sa.Table(
    "user_roles",
    db.metadata,
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role_id", sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    **MYSQL_TABLE_ARGS,
)


class Role(db.Model):
    __tablename__ = "roles"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(32), unique=True)
    description: Mapped[str | None] = mapped_column(sa.String(255))

    def __repr__(self) -> str:
        return f"<Role {self.name}>"

    def __str__(self) -> str:
        return self.name


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: part of every session's user id: signing out and a new password move it on, so every older session (and a
    #: stolen cookie) stops working at once (app.web.auth.load_user)
    session_version: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))

    roles: Mapped[list[Role]] = relationship(secondary=user_roles, lazy="selectin")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    def get_id(self) -> str:  # Flask-Login: what the session keeps
        return f"{self.id}:{self.session_version or 0}"

    def set_password(self, password: str) -> None:
        if len(password) < 10:
            raise ValueError("a password needs at least 10 characters")
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def has_role(self, *names: str) -> bool:
        mine = {r.name for r in self.roles}
        return bool(mine & set(names))

    def __repr__(self) -> str:
        return f"<User {self.email}>"

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@event.listens_for(User.password_hash, "set", active_history=True)
def _a_new_password_ends_every_session(target: User, value: str, oldvalue: object, initiator: object) -> None:
    # whoever sets it (the person, an admin, the CLI): the sessions opened with the old password end
    if oldvalue not in (NO_VALUE, None) and value != oldvalue:
        target.session_version = (target.session_version or 0) + 1


class SignInThrottle(db.Model):
    """Failed sign-ins counted per key (an account, a client address, the two together; see
    app.accounts.login_throttle).
    Keys are hashes, so no address or email is kept here."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
