"""Sign-in and sign-out for the admin."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from app.accounts.login_throttle import SignInLimits
from app.accounts.users import authenticate, end_sessions
from app.extensions import db, login_manager
from app.models import User

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user a session names, if the session is still theirs: ``<id>:<session version>`` (a session from before
    the last sign-out or password change names an older version) and the account is active."""
    user_id, _, version = str(session_id).partition(":")
    if not (user_id.isascii() and user_id.isdigit() and version.isascii() and version.isdigit()) or len(user_id) > 18:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or str(user.session_version or 0) != version:
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized():  # type: ignore[no-untyped-def]
    if request.path.startswith("/api/"):
        return {"error": "authentication required"}, 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect after sign-in is a phishing tool.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        result = authenticate(
            form.email.data or "",
            form.password.data or "",
            client=request.remote_addr or "unknown",  # the real client behind a trusted proxy (app.proxies)
            limits=SignInLimits.from_config(current_app.config),
        )
        if result.user is not None:
            login_user(result.user)
            return redirect(_safe_next(request.args.get("next")))
        error = result.error
    status = 401 if error else 200
    return render_template("auth/login.html", form=form, error=error), status


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    if getattr(current_user, "is_authenticated", False):
        end_sessions(current_user._get_current_object())  # a copy of this session's cookie stops working too
    logout_user()
    return redirect(url_for("auth.login"))
