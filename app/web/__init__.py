"""Blueprints, one per area."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.extensions import csrf
    from app.web.api import bp as api_bp
    from app.web.auth import bp as auth_bp
    from app.web.hooks import bp as hooks_bp
    from app.web.ops import bp as ops_bp
    from app.web.ops import install as install_request_ids
    from app.web.pay import bp as pay_bp
    from app.web.short import bp as short_bp
    from app.web.track import bp as track_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(pay_bp)
    app.register_blueprint(short_bp)
    app.register_blueprint(track_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(ops_bp)  # /healthz, /readyz, /metrics
    install_request_ids(app)
    # Providers cannot send our CSRF token: webhooks are authenticated by their signatures instead.
    csrf.exempt(hooks_bp)
    csrf.exempt(api_bp)
    csrf.exempt(track_bp)  # one-click unsubscribe is a POST from a mail client, authorised by its signed URL

    @app.get("/")
    def index():  # type: ignore[no-untyped-def]
        from flask import redirect, url_for

        return redirect(url_for("admin.index"))
