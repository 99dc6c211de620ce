"""The Flask-Admin panel at /admin/ (Flask-Admin 2, Bootstrap 4 theme). Every view requires sign-in."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme


def init_admin(app: Flask) -> Admin:
    from admin.views import HomeView, register_views

    admin = Admin(
        app,
        name="Recoup",
        index_view=HomeView(name="Home", url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(swatch=app.config.get("FLASK_ADMIN_SWATCH", "default"), fluid=True),
    )
    register_views(admin)
    return admin
