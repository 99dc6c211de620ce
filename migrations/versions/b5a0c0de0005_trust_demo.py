"""trust demo

Revision ID: b5a0c0de0005
Revises: b4a0c0de0004
Create Date: 2026-12-06 04:40:00

Trust: the demo a newcomer can drive (issue 13, point 8). No schema change: the demo's business clock keeps its
offset as a row of the settings table (app.clock), and the sandbox inboxes live in files beside the database.
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

revision = 'b5a0c0de0005'
down_revision = 'b4a0c0de0004'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
