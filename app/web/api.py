"""REST API v1. Every route needs an authenticated session (API tokens come with the API issue)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import current_user

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def require_authentication():  # type: ignore[no-untyped-def]
    if not current_user.is_authenticated:
        return jsonify({"error": "authentication required"}), 401
    return None


@bp.get("/openapi.json")
def openapi():  # type: ignore[no-untyped-def]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Recoup API", "version": "1"},
        "paths": {},
    }
