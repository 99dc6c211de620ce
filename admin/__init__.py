"""The Flask-Admin panel at /admin/ (Flask-Admin 2, Bootstrap 4 theme). Every view requires sign-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, render_template, request
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from werkzeug.exceptions import Forbidden

from admin.i18n import _l

#: our own CSS and JS (vendored, no CDN), served at /admin/assets/
assets = Blueprint("recoup_admin_assets", __name__, static_folder=str(Path(__file__).parent / "static"),
                   static_url_path="/admin/assets")


def init_admin(app: Flask) -> Admin:
    from admin.ui import init_ui
    from admin.views import HomeView, register_views

    app.register_blueprint(assets)
    init_ui(app)
    admin = Admin(
        app,
        name="Recoup",
        index_view=HomeView(name=_l("Home"), url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(swatch=app.config.get("FLASK_ADMIN_SWATCH", "default"), fluid=True),
    )
    register_views(admin)
    from admin.queues import register as register_queues

    register_queues(admin)  # Operations > Job queues (admins only, read-only)
    app.register_error_handler(403, _forbidden)
    from flask_wtf.csrf import CSRFError

    from admin.security import refused_as_expired

    app.register_error_handler(CSRFError, refused_as_expired)
    return admin


def _forbidden(error: Forbidden) -> Any:
    """A refused change in the admin says so in words (still 403); elsewhere the default answer."""
    if not request.path.startswith("/admin"):
        return error
    return render_template("admin/forbidden.html"), 403
