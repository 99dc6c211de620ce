"""Inbound provider webhooks. Each verifies its signature before anything is stored."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
